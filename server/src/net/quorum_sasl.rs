//! SASL between servers (`quorum.auth.*`), as ZooKeeper 3.8 runs it: DIGEST-MD5 (service
//! `zookeeper-quorum`, realm `zk-quorum-sasl-md5`), users from the JAAS section
//! `QuorumServer` (`user_NAME="pw"`), this server's login from `QuorumLearner`
//! (`username`, `password`); or, when `QuorumServer` names `Krb5LoginModule`, Kerberos
//! (GSSAPI, [`crate::sasl::gssapi`]): tickets for `quorum.auth.kerberos.servicePrincipal`
//! (`_HOST`: the dialled server's host), keytabs from both sections, and a peer's principal
//! with a host part let in only for a member's host.
//!
//! The exchange is a series of `QuorumAuthPacket {long magic; int status; buffer token}`
//! records written bare (no length prefix), the dialling side first: on the election port
//! right after the connection's initial message, on the quorum port before anything else.
//! The dialling side ("learner") authenticates only with `learnerRequireSasl=true`; the
//! accepting side looks at the next 8 bytes: the magic starts an exchange, anything else is
//! let through unless `serverRequireSasl=true`. A failed exchange is answered ERROR and the
//! connection closed when required, kept otherwise.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sasl::digest::{DigestClient, DigestServer, Step};

/// `QuorumAuth.QUORUM_AUTH_MAGIC_NUMBER`.
pub const MAGIC: i64 = 0x5F24_3501_3501_EDCC;
const IN_PROGRESS: i32 = 0;
const SUCCESS: i32 = 1;
const ERROR: i32 = -1;
/// ZooKeeper's service (protocol) name between servers.
const SERVICE: &str = "zookeeper-quorum";
/// ZooKeeper's DIGEST-MD5 server name and realm between servers.
const REALM: &str = "zk-quorum-sasl-md5";
/// The largest token read.
const TOKEN_MAX: usize = 64 << 10;
/// Steps of an exchange at most (ZooKeeper's MAX_RETRIES).
const ROUNDS_MAX: usize = 5;

/// A JAAS section's login module and its options.
type Section = (String, BTreeMap<String, String>);

/// SASL between servers.
#[derive(Debug)]
pub struct QuorumSasl {
    learner_required: bool,
    server_required: bool,
    mechanism: Mechanism,
}

/// The mechanism, chosen (as in ZooKeeper) by the `QuorumServer` section's login module.
#[derive(Debug)]
enum Mechanism {
    /// `DigestLoginModule`: users, and this server's login as a learner.
    Digest { users: BTreeMap<String, String>, login: Option<(String, String)> },
    /// `Krb5LoginModule`: the keytab and principal of each section, and the principal of the
    /// servers dialled (`quorum.auth.kerberos.servicePrincipal`).
    Kerberos {
        server: crate::sasl::Kerberos,
        learner: Option<crate::sasl::Kerberos>,
        service_principal: String,
    },
}

impl QuorumSasl {
    /// The settings of `config`: `None` without `quorum.auth.enableSasl=true`; an error for
    /// inconsistent keys (as ZooKeeper's) or a missing JAAS section.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Arc<QuorumSasl>>, String> {
        let k = &config.quorum_sasl;
        if !k.enable {
            if k.learner_required || k.server_required {
                return Err("quorum.auth.learnerRequireSasl / serverRequireSasl need quorum.auth.enableSasl=true".into());
            }
            return Ok(None);
        }
        if k.server_required && !k.learner_required {
            return Err(
                "quorum.auth.serverRequireSasl=true needs quorum.auth.learnerRequireSasl=true"
                    .into(),
            );
        }
        let props = &config.system_properties;
        let path = props
            .get("java.security.auth.login.config")
            .map(|p| p.trim().trim_start_matches('=').to_string())
            .filter(|p| !p.is_empty())
            .ok_or(
                "quorum.auth.enableSasl=true needs a JAAS file (java.security.auth.login.config)",
            )?;
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("the JAAS file {path}: {e}"))?;
        let lookup = |key: &str| props.get(key).cloned();
        let sections = crate::sasl::jaas::parse(&text, &lookup)
            .map_err(|e| format!("the JAAS file {path}: {e}"))?;
        // A section's login module and its options.
        let module = |name: &str| -> Result<Option<Section>, String> {
            let Some(mods) = sections.get(name) else { return Ok(None) };
            let mut class = None;
            let mut options = BTreeMap::new();
            for m in mods {
                if m.class != crate::sasl::DIGEST_LOGIN_MODULE
                    && m.class != crate::sasl::KRB5_LOGIN_MODULE
                {
                    return Err(format!(
                        "the JAAS file {path}, section {name}: login module {} is not supported by Corral (only {} and {})",
                        m.class,
                        crate::sasl::DIGEST_LOGIN_MODULE,
                        crate::sasl::KRB5_LOGIN_MODULE
                    ));
                }
                class.get_or_insert_with(|| m.class.clone());
                options.extend(m.options.clone());
            }
            Ok(class.map(|c| (c, options)))
        };
        let (server_class, server) = module(&k.server_context)?.ok_or_else(|| {
            format!(
                "the JAAS file {path} has no section {} (quorum.auth.server.saslLoginContext)",
                k.server_context
            )
        })?;
        let learner = module(&k.learner_context)?;
        if learner.is_none() && k.learner_required {
            return Err(format!(
                "the JAAS file {path} has no section {} (quorum.auth.learner.saslLoginContext)",
                k.learner_context
            ));
        }
        let mechanism = if server_class == crate::sasl::KRB5_LOGIN_MODULE {
            crate::sasl::gssapi::available()
                .map_err(|e| format!("the JAAS file {path} asks for Kerberos: {e}"))?;
            let server = crate::sasl::Kerberos::from_options(&server);
            // Fail now, not at the first peer, if the keytab has no key for the principal.
            crate::sasl::gssapi::Acceptor::new(
                server.principal.as_deref(),
                server.keytab.as_deref(),
            )
            .map_err(|e| format!("the JAAS file {path}, section {}: {e}", k.server_context))?;
            let learner = match learner {
                Some((c, o)) if c == crate::sasl::KRB5_LOGIN_MODULE => {
                    Some(crate::sasl::Kerberos::from_options(&o))
                }
                Some((c, _)) => {
                    return Err(format!(
                        "the JAAS file {path}: section {} uses {c}, section {} Kerberos; a server has one mechanism",
                        k.learner_context, k.server_context
                    ))
                }
                None => None,
            };
            tracing::info!(principal = ?server.principal, service = %k.service_principal, "SASL between servers: Kerberos (GSSAPI)");
            Mechanism::Kerberos { server, learner, service_principal: k.service_principal.clone() }
        } else {
            let users = server
                .iter()
                .filter_map(|(o, v)| o.strip_prefix("user_").map(|u| (u.to_string(), v.clone())))
                .collect();
            let login = match learner {
                Some((_, o)) => match (o.get("username"), o.get("password")) {
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    _ => {
                        return Err(format!(
                            "the JAAS file {path}, section {}: username and password are needed",
                            k.learner_context
                        ))
                    }
                },
                None => None,
            };
            Mechanism::Digest { users, login }
        };
        Ok(Some(Arc::new(QuorumSasl {
            learner_required: k.learner_required,
            server_required: k.server_required,
            mechanism,
        })))
    }

    /// The dialling side's exchange (nothing unless learnerRequireSasl).
    /// `host`: the dialled server's host as its `server.N` line names it.
    pub fn learn(&self, s: &mut TcpStream, host: &str) -> io::Result<()> {
        if !self.learner_required {
            return Ok(());
        }
        let (user, password) = match &self.mechanism {
            Mechanism::Digest { login: Some((u, p)), .. } => (u, p),
            Mechanism::Digest { login: None, .. } => {
                return Err(refused("no QuorumLearner login".into()))
            }
            Mechanism::Kerberos { learner, service_principal, .. } => {
                let target = service_principal.replace("_HOST", &host.to_lowercase());
                return learn_kerberos(s, &target, learner.as_ref())
                    .map_err(|e| refused(format!("quorum SASL (Kerberos, {target}): {e}")));
            }
        };
        let mut client = DigestClient::new(user, password, SERVICE, REALM);
        write_packet(s, IN_PROGRESS, Some(&[]))?;
        for _ in 0..ROUNDS_MAX {
            let (status, token) = read_packet(s)?;
            let token = token.unwrap_or_default();
            match status {
                IN_PROGRESS => {
                    let mut cnonce = [0u8; 24];
                    rand::Rng::fill(&mut rand::rng(), &mut cnonce[..]);
                    let r = client.respond(&token, &cnonce).map_err(|e| refused(e.to_string()))?;
                    write_packet(s, IN_PROGRESS, Some(&r))?;
                }
                SUCCESS => {
                    return client.finish(&token).map_err(|e| refused(format!("quorum SASL: {e}")));
                }
                _ => return Err(refused("quorum SASL: the peer refused our login".into())),
            }
        }
        Err(refused("quorum SASL: too many rounds".into()))
    }

    /// The accepting side: an exchange if the peer starts one; `within` bounds the wait for
    /// its first bytes.
    /// `hosts`: the members' hosts (a Kerberos peer's principal must name one of them).
    pub fn serve(&self, s: &mut TcpStream, within: Duration, hosts: &[String]) -> io::Result<()> {
        if !next_is_auth(s, within)? {
            if self.server_required {
                return Err(refused(
                    "a peer without quorum SASL (quorum.auth.serverRequireSasl)".into(),
                ));
            }
            return Ok(());
        }
        match self.exchange(s, hosts) {
            Ok(user) => {
                tracing::debug!(user = %user, "quorum SASL: peer authenticated");
                Ok(())
            }
            Err(why) => {
                let _ = write_packet(s, ERROR, Some(&[]));
                if self.server_required {
                    Err(refused(format!("quorum SASL: {why}")))
                } else {
                    tracing::warn!(reason = %why, "quorum SASL failed; keeping the connection (quorum.auth.serverRequireSasl=false)");
                    Ok(())
                }
            }
        }
    }

    fn exchange(&self, s: &mut TcpStream, hosts: &[String]) -> Result<String, String> {
        let users = match &self.mechanism {
            Mechanism::Digest { users, .. } => users,
            Mechanism::Kerberos { server, .. } => return serve_kerberos(s, server, hosts),
        };
        let mut server = DigestServer::new(SERVICE, REALM, users);
        let (_, mut token) = read_packet(s).map_err(|e| e.to_string())?;
        for _ in 0..ROUNDS_MAX {
            let mut nonce = [0u8; 24];
            rand::Rng::fill(&mut rand::rng(), &mut nonce[..]);
            match server
                .step(&token.take().unwrap_or_default(), &nonce)
                .map_err(|e| e.to_string())?
            {
                Step::Challenge(c) => {
                    write_packet(s, IN_PROGRESS, Some(&c)).map_err(|e| e.to_string())?;
                    token = read_packet(s).map_err(|e| e.to_string())?.1;
                }
                Step::Done { token, user } => {
                    write_packet(s, SUCCESS, Some(&token)).map_err(|e| e.to_string())?;
                    return Ok(user);
                }
            }
        }
        Err("too many rounds".into())
    }
}

/// A learner's Kerberos exchange with the server whose principal is `target`.
fn learn_kerberos(
    s: &mut TcpStream,
    target: &str,
    login: Option<&crate::sasl::Kerberos>,
) -> Result<(), String> {
    let mut init = crate::sasl::gssapi::Initiator::new(
        target,
        login.and_then(|l| l.principal.as_deref()),
        login.and_then(|l| l.keytab.as_deref()),
    )
    .map_err(|e| e.to_string())?;
    let first = init.start().map_err(|e| e.to_string())?;
    write_packet(s, IN_PROGRESS, Some(&first)).map_err(|e| e.to_string())?;
    for _ in 0..ROUNDS_MAX {
        let (status, token) = read_packet(s).map_err(|e| e.to_string())?;
        match status {
            IN_PROGRESS => {
                let next = init.step(&token.unwrap_or_default()).map_err(|e| e.to_string())?;
                write_packet(s, IN_PROGRESS, Some(&next.unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
            }
            SUCCESS if init.is_done() => return Ok(()),
            SUCCESS => return Err("the server ended the exchange early".into()),
            _ => return Err("the peer refused our login".into()),
        }
    }
    Err("too many rounds".into())
}

/// The accepting side's Kerberos exchange: the peer's principal, once authenticated and
/// authorized as ZooKeeper's `SaslQuorumServerCallbackHandler` does (a principal with a host
/// part must name one of the members' hosts).
fn serve_kerberos(
    s: &mut TcpStream,
    server: &crate::sasl::Kerberos,
    hosts: &[String],
) -> Result<String, String> {
    use crate::sasl::gssapi::{AcceptStep, Acceptor};
    let mut acc = Acceptor::new(server.principal.as_deref(), server.keytab.as_deref())
        .map_err(|e| e.to_string())?;
    let (_, mut token) = read_packet(s).map_err(|e| e.to_string())?;
    for _ in 0..ROUNDS_MAX {
        match acc.step(&token.take().unwrap_or_default()).map_err(|e| e.to_string())? {
            AcceptStep::Continue(c) => {
                write_packet(s, IN_PROGRESS, Some(&c)).map_err(|e| e.to_string())?;
                token = read_packet(s).map_err(|e| e.to_string())?.1;
            }
            AcceptStep::Done { principal } => {
                let host = crate::sasl::gssapi::Principal::parse(&principal).host;
                if host.is_some_and(|h| !hosts.iter().any(|m| m == h)) {
                    return Err(format!(
                        "{principal} is not authorized: its host is not one of the members' ({hosts:?})"
                    ));
                }
                write_packet(s, SUCCESS, None).map_err(|e| e.to_string())?;
                return Ok(principal);
            }
        }
    }
    Err("too many rounds".into())
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Whether the next 8 bytes are the auth magic (they are left unread).
fn next_is_auth(s: &TcpStream, within: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + within;
    let mut b = [0u8; 8];
    let before = s.read_timeout()?;
    let r = loop {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left))?;
        match s.peek(&mut b) {
            Ok(0) => break Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(8) => break Ok(i64::from_be_bytes(b) == MAGIC),
            // A different first byte already says it is not the magic.
            Ok(n) if b[..n] != MAGIC.to_be_bytes()[..n] => break Ok(false),
            Ok(_) if Instant::now() >= deadline => break Ok(false),
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                break Ok(false)
            }
            Err(e) => break Err(e),
        }
    };
    s.set_read_timeout(before)?;
    r
}

fn write_packet(s: &mut TcpStream, status: i32, token: Option<&[u8]>) -> io::Result<()> {
    let mut b = Vec::with_capacity(16 + token.map_or(0, <[u8]>::len));
    b.extend_from_slice(&MAGIC.to_be_bytes());
    b.extend_from_slice(&status.to_be_bytes());
    match token {
        None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(t) => {
            b.extend_from_slice(&(t.len() as i32).to_be_bytes());
            b.extend_from_slice(t);
        }
    }
    s.write_all(&b)
}

fn read_packet(s: &mut TcpStream) -> io::Result<(i32, Option<Vec<u8>>)> {
    let mut h = [0u8; 16];
    s.read_exact(&mut h)?;
    let status = i32::from_be_bytes(h[8..12].try_into().expect("4 bytes"));
    let len = i32::from_be_bytes(h[12..16].try_into().expect("4 bytes"));
    if len < 0 {
        return Ok((status, None));
    }
    if len as usize > TOKEN_MAX {
        return Err(refused(format!("a quorum SASL token of {len} bytes")));
    }
    let mut t = vec![0u8; len as usize];
    s.read_exact(&mut t)?;
    Ok((status, Some(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn sasl(learner: bool, server: bool, login: (&str, &str)) -> QuorumSasl {
        QuorumSasl {
            learner_required: learner,
            server_required: server,
            mechanism: Mechanism::Digest {
                users: [("test".to_string(), "pw".to_string())].into(),
                login: Some((login.0.into(), login.1.into())),
            },
        }
    }

    /// Runs the learner side against the server side over a loopback connection; then the
    /// learner writes `after` and the server must read it next.
    fn run(l: QuorumSasl, srv: QuorumSasl) -> (io::Result<()>, io::Result<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let r = l.learn(&mut s, "localhost");
            if r.is_ok() {
                s.write_all(b"after").unwrap();
            }
            r
        });
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = srv.serve(&mut s, Duration::from_secs(2), &["localhost".to_string()]);
        let lr = t.join().unwrap();
        if r.is_ok() && lr.is_ok() {
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"after", "the stream goes on where the exchange ended");
        }
        (lr, r)
    }

    #[test]
    fn a_good_login_passes_and_the_stream_goes_on() {
        let (l, s) = run(sasl(true, true, ("test", "pw")), sasl(true, true, ("x", "y")));
        l.unwrap();
        s.unwrap();
    }

    #[test]
    fn a_bad_login_is_refused_when_required_and_tolerated_otherwise() {
        let (l, s) = run(sasl(true, true, ("test", "wrong")), sasl(true, true, ("x", "y")));
        assert!(l.is_err() && s.is_err());
        let (l, s) = run(sasl(true, true, ("test", "wrong")), sasl(true, false, ("x", "y")));
        assert!(l.is_err(), "the learner sees ERROR");
        assert!(s.is_ok(), "not required: the server keeps the connection");
    }

    #[test]
    fn a_peer_without_sasl_passes_only_where_not_required() {
        let (l, s) = run(sasl(false, false, ("test", "pw")), sasl(true, false, ("x", "y")));
        assert!(l.is_ok() && s.is_ok());
        let (_, s) = run(sasl(false, false, ("test", "pw")), sasl(true, true, ("x", "y")));
        assert!(s.is_err());
    }

    #[test]
    fn the_packet_layout_is_zookeepers() {
        // magic, status, token length, token: QuorumAuthPacket written bare.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        write_packet(&mut c, SUCCESS, Some(b"ab")).unwrap();
        let mut b = [0u8; 18];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b[..8], &[0x5F, 0x24, 0x35, 0x01, 0x35, 0x01, 0xED, 0xCC]);
        assert_eq!(&b[8..], &[0, 0, 0, 1, 0, 0, 0, 2, b'a', b'b']);
    }
}
