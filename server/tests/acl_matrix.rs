//! The ACL matrix: every identity a client can hold — none (world), digest, ip, x509 (a TLS
//! client certificate), sasl (DIGEST-MD5), super (superDigest), and `auth` (the creator's
//! ids) — tries every operation (read, write, create, delete, admin) on a node guarded by
//! each scheme, and exactly the allowed ones succeed: no unauthorized read or write, no
//! authorized one refused.

mod common;

use std::path::Path;

use common::raw::*;
use corral_server::config::Config;
use corral_server::proto::{
    Acl, AuthPacket, Data, DeleteRequest, Request, SetAclRequest, SetDataRequest,
};
use corral_server::server::{RunningServer, ServerOptions};
use corral_server::tree::acl::digest_id;

const ALL: i32 = 31;
const READ: i32 = 1;
const NO_AUTH: i32 = -102;

fn start(dir: &Path) -> RunningServer {
    let jaas = dir.join("jaas.conf");
    std::fs::write(
        &jaas,
        "Server { org.apache.zookeeper.server.auth.DigestLoginModule required user_jaasuser=\"jaas_password\"; };",
    )
    .unwrap();
    let text = format!(
        "tickTime=2000\ndataDir={}\nclientPort=2181\nsecureClientPort=2281\n\
         ssl.keyStore.location={}\nssl.keyStore.password=apassword\n\
         ssl.trustStore.location={}\nssl.trustStore.password=apassword\n\
         authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
         java.security.auth.login.config={}\n\
         DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n",
        dir.display(),
        testdata("keystore.jks"),
        testdata("truststore.jks"),
        jaas.display()
    );
    let config = Config::parse_str(&text).expect("config");
    let mut opts = ServerOptions::from_config(&config).expect("options");
    opts.bind = "127.0.0.1:0".parse().unwrap();
    let mut t = std::sync::Arc::into_inner(opts.client_tls.take().unwrap()).unwrap();
    t.secure_bind = Some("127.0.0.1:0".parse().unwrap());
    opts.client_tls = Some(std::sync::Arc::new(t));
    RunningServer::start(opts).expect("server starts")
}

fn add_digest(s: &mut Session, user_pw: &str) {
    let req = Request::Auth(AuthPacket {
        auth_type: 0,
        scheme: "digest".into(),
        auth: Data::from(user_pw.as_bytes().to_vec()),
    });
    assert_eq!(s.code(&req), 0);
}

/// A session holding `identity`.
fn login(server: &RunningServer, identity: &str) -> Session {
    match identity {
        "x509" => Session::open(
            tls(server.secure_addr().unwrap(), Some(("client-cert.pem", "client-key.pem")))
                .unwrap(),
        ),
        _ => {
            let mut s = Session::open(plain(server.addr()));
            match identity {
                "anon" => {}
                "alice" => add_digest(&mut s, "alice:pw"),
                "super" => add_digest(&mut s, "super:test"),
                "sasl" => assert_eq!(s.sasl_login("jaasuser", "jaas_password"), 0),
                other => panic!("{other}"),
            }
            s
        }
    }
}

const IDENTITIES: [&str; 5] = ["anon", "alice", "x509", "sasl", "super"];

#[test]
fn every_identity_can_do_exactly_what_the_acls_allow() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let alice = digest_id("alice", "pw");
    // node → (its ACL, the identities it grants everything; read-only grants READ to all).
    let nodes: Vec<(&str, Vec<Acl>, Vec<&str>)> = vec![
        ("world", vec![acl(ALL, "world", "anyone")], IDENTITIES.to_vec()),
        ("read-only", vec![acl(READ, "world", "anyone")], vec!["super"]),
        ("digest", vec![acl(ALL, "digest", &alice)], vec!["alice", "super"]),
        // Every client here connects from 127.0.0.1.
        ("ip-local", vec![acl(ALL, "ip", "127.0.0.1")], IDENTITIES.to_vec()),
        ("ip-other", vec![acl(ALL, "ip", "10.9.0.0/16")], vec!["super"]),
        ("x509", vec![acl(ALL, "x509", "CN=client")], vec!["x509", "super"]),
        ("sasl", vec![acl(ALL, "sasl", "jaasuser")], vec!["sasl", "super"]),
        ("auth", vec![acl(ALL, "auth", "")], vec!["alice", "super"]),
    ];
    let mut su = login(&server, "super");
    assert_eq!(su.code(&create("/m", vec![acl(ALL, "world", "anyone")])), 0);
    let mut al = login(&server, "alice");
    for (name, a, _) in &nodes {
        // The auth node is alice's: `auth` stands for the creator's authenticated ids.
        let who = if *name == "auth" { &mut al } else { &mut su };
        assert_eq!(who.code(&create(&format!("/m/{name}"), a.clone())), 0, "{name}");
        for id in IDENTITIES {
            let child = format!("/m/{name}/x-{id}");
            assert_eq!(su.code(&create(&child, vec![acl(ALL, "world", "anyone")])), 0);
        }
    }
    let (mut checked, mut unauthorized, mut refused) = (0, Vec::new(), Vec::new());
    for id in IDENTITIES {
        let mut s = login(&server, id);
        for (name, a, grants) in &nodes {
            let path = format!("/m/{name}");
            let stored = if *name == "auth" { vec![acl(ALL, "digest", &alice)] } else { a.clone() };
            let ops: Vec<(&str, i32, Request)> = vec![
                ("read", READ, get(&path)),
                (
                    "write",
                    2,
                    Request::SetData(SetDataRequest {
                        path: path.clone(),
                        data: Data::from(b"w".to_vec()),
                        version: -1,
                    }),
                ),
                ("create", 4, create(&format!("{path}/c-{id}"), vec![acl(ALL, "world", "anyone")])),
                (
                    "delete",
                    8,
                    Request::Delete(DeleteRequest { path: format!("{path}/x-{id}"), version: -1 }),
                ),
                (
                    "admin",
                    16,
                    Request::SetAcl(SetAclRequest { path: path.clone(), acl: stored, version: -1 }),
                ),
            ];
            for (op, perm, req) in ops {
                let allowed = grants.contains(&id) || (*name == "read-only" && perm == READ);
                let code = s.code(&req);
                checked += 1;
                match (allowed, code) {
                    (true, 0) | (false, NO_AUTH) => {}
                    (false, 0) => unauthorized.push(format!("{id} {op} {path}")),
                    (true, c) => refused.push(format!("{id} {op} {path}: {c}")),
                    (false, c) => refused.push(format!("{id} {op} {path}: {c} (expected NOAUTH)")),
                }
            }
        }
    }
    eprintln!("{checked} operations checked");
    assert_eq!(checked, IDENTITIES.len() * nodes.len() * 5);
    assert!(unauthorized.is_empty(), "unauthorized operations succeeded: {unauthorized:#?}");
    assert!(refused.is_empty(), "authorized operations refused: {refused:#?}");
}
