//! The DIGEST-MD5 SASL mechanism (RFC 2831), server side, as the JDK's server runs it for
//! ZooKeeper: realm = server name = `zk-sasl-md5`, service `zookeeper`, quality of protection
//! `auth` only, `algorithm=md5-sess`, `charset=utf-8`.
//!
//! Step 1: whatever the client sends first, the server answers its challenge
//! `realm="zk-sasl-md5",nonce="…",charset=utf-8,algorithm=md5-sess`. Step 2: the client's
//! digest-response is checked (realm, nonce, nc = 1, qop auth, digest-uri
//! `zookeeper/zk-sasl-md5`, the response digest from the user's password); the server answers
//! `rspauth=…` and is done. Any failure is an error: the caller answers AUTHFAILED.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

/// Why an exchange failed (logged; the client only learns AUTHFAILED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client's message could not be read.
    #[error("malformed DIGEST-MD5 response: {0}")]
    Malformed(String),
    /// A directive had a value the server does not accept.
    #[error("DIGEST-MD5 {0}")]
    Refused(String),
    /// No such user.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// The digest did not match the user's password.
    #[error("wrong password for user {0}")]
    WrongPassword(String),
    /// More messages than the mechanism has.
    #[error("the exchange is already over")]
    Over,
}

/// What the server answers a client's message with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A challenge; the exchange goes on.
    Challenge(Vec<u8>),
    /// The last token (`rspauth`); the client is authenticated as `user`.
    Done {
        /// The token to send.
        token: Vec<u8>,
        /// The authentication id (the user name).
        user: String,
    },
}

/// One exchange.
#[derive(Debug)]
pub struct DigestServer<'a> {
    service: &'a str,
    realm: &'a str,
    users: &'a BTreeMap<String, String>,
    nonce: Option<String>,
    over: bool,
}

impl<'a> DigestServer<'a> {
    /// An exchange for `service` (`zookeeper`) in `realm` (`zk-sasl-md5`) with these users.
    pub fn new(service: &'a str, realm: &'a str, users: &'a BTreeMap<String, String>) -> Self {
        DigestServer { service, realm, users, nonce: None, over: false }
    }

    /// An exchange whose challenge (with `nonce`) was already sent.
    pub fn resume(&mut self, nonce: String) {
        self.nonce = Some(nonce);
    }

    /// The nonce of the challenge sent, if one was.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }

    /// The answer to the client's next message; `nonce` is fresh randomness for the challenge
    /// (only used by the first step).
    pub fn step(&mut self, token: &[u8], nonce: &[u8]) -> Result<Step, SaslError> {
        if self.over {
            return Err(SaslError::Over);
        }
        let Some(nonce_sent) = self.nonce.clone() else {
            use base64::Engine as _;
            let n = base64::engine::general_purpose::STANDARD.encode(nonce);
            let challenge =
                format!("realm=\"{}\",nonce=\"{n}\",charset=utf-8,algorithm=md5-sess", self.realm);
            self.nonce = Some(n);
            return Ok(Step::Challenge(challenge.into_bytes()));
        };
        self.over = true;
        let text =
            std::str::from_utf8(token).map_err(|_| SaslError::Malformed("not UTF-8".into()))?;
        let d = directives(text)?;
        let get = |k: &str| d.get(k).map(String::as_str);
        if let Some(cs) = get("charset") {
            if !cs.eq_ignore_ascii_case("utf-8") {
                return Err(SaslError::Refused(format!("charset {cs}")));
            }
        }
        let user = get("username").ok_or_else(|| SaslError::Malformed("no username".into()))?;
        let realm = get("realm").unwrap_or("");
        if realm != self.realm {
            return Err(SaslError::Refused(format!("realm {realm:?}")));
        }
        if get("nonce") != Some(nonce_sent.as_str()) {
            return Err(SaslError::Refused("nonce is not the one sent".into()));
        }
        let cnonce = get("cnonce").ok_or_else(|| SaslError::Malformed("no cnonce".into()))?;
        let nc = get("nc").unwrap_or("00000001");
        if u32::from_str_radix(nc, 16).ok() != Some(1) {
            return Err(SaslError::Refused(format!("nonce count {nc}")));
        }
        let qop = get("qop").unwrap_or("auth");
        if qop != "auth" {
            return Err(SaslError::Refused(format!("qop {qop} (only auth is offered)")));
        }
        let uri = get("digest-uri").ok_or_else(|| SaslError::Malformed("no digest-uri".into()))?;
        let expected_uri = format!("{}/{}", self.service, self.realm);
        if !uri.eq_ignore_ascii_case(&expected_uri) {
            return Err(SaslError::Refused(format!("digest-uri {uri}")));
        }
        let response = get("response").ok_or_else(|| SaslError::Malformed("no response".into()))?;
        let authzid = get("authzid");
        let password =
            self.users.get(user).ok_or_else(|| SaslError::UnknownUser(user.to_string()))?;
        let ha1 = ha1(user, realm, password, &nonce_sent, cnonce, authzid);
        let want =
            digest_response(&ha1, &nonce_sent, nc, cnonce, qop, &format!("AUTHENTICATE:{uri}"));
        if !constant_time_eq(want.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
            return Err(SaslError::WrongPassword(user.to_string()));
        }
        let rspauth = digest_response(&ha1, &nonce_sent, nc, cnonce, qop, &format!(":{uri}"));
        Ok(Step::Done { token: format!("rspauth={rspauth}").into_bytes(), user: user.to_string() })
    }
}

/// The client side of an exchange (a quorum learner's, and the tests').
#[derive(Debug)]
pub struct DigestClient {
    user: String,
    password: String,
    uri: String,
    expect_rspauth: Option<String>,
}

impl DigestClient {
    /// A client logging in as `user` to `service`/`host` (ZooKeeper: `zookeeper`/`zk-sasl-md5`).
    pub fn new(user: &str, password: &str, service: &str, host: &str) -> DigestClient {
        DigestClient {
            user: user.into(),
            password: password.into(),
            uri: format!("{service}/{host}"),
            expect_rspauth: None,
        }
    }

    /// The response to the server's challenge; `cnonce` is fresh randomness.
    pub fn respond(&mut self, challenge: &[u8], cnonce: &[u8]) -> Result<Vec<u8>, SaslError> {
        use base64::Engine as _;
        let text =
            std::str::from_utf8(challenge).map_err(|_| SaslError::Malformed("not UTF-8".into()))?;
        let d = directives(text)?;
        let realm = d.get("realm").cloned().unwrap_or_default();
        let nonce = d.get("nonce").ok_or_else(|| SaslError::Malformed("no nonce".into()))?;
        if d.get("algorithm").map(String::as_str) != Some("md5-sess") {
            return Err(SaslError::Refused("challenge without algorithm=md5-sess".into()));
        }
        let cnonce = base64::engine::general_purpose::STANDARD.encode(cnonce);
        let nc = "00000001";
        let ha1 = ha1(&self.user, &realm, &self.password, nonce, &cnonce, Some(&self.user));
        let response = digest_response(
            &ha1,
            nonce,
            nc,
            &cnonce,
            "auth",
            &format!("AUTHENTICATE:{}", self.uri),
        );
        self.expect_rspauth =
            Some(digest_response(&ha1, nonce, nc, &cnonce, "auth", &format!(":{}", self.uri)));
        Ok(format!(
            "charset=utf-8,username=\"{}\",realm=\"{realm}\",nonce=\"{nonce}\",nc={nc},cnonce=\"{cnonce}\",digest-uri=\"{}\",maxbuf=65536,response={response},qop=auth,authzid=\"{}\"",
            self.user, self.uri, self.user
        )
        .into_bytes())
    }

    /// Checks the server's last token (`rspauth`): it proves the server knew the password.
    pub fn finish(&self, token: &[u8]) -> Result<(), SaslError> {
        let text =
            std::str::from_utf8(token).map_err(|_| SaslError::Malformed("not UTF-8".into()))?;
        let d = directives(text)?;
        match (&self.expect_rspauth, d.get("rspauth")) {
            (Some(want), Some(got)) if want == got => Ok(()),
            _ => Err(SaslError::Refused("the server's rspauth does not match".into())),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Text as the JDK encodes it for the digest: ISO-8859-1 when every character fits, else
/// UTF-8.
fn latin1_or_utf8(s: &str) -> Vec<u8> {
    if s.chars().all(|c| (c as u32) < 0x100) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

/// HA1 = MD5( MD5(user:realm:password) : nonce : cnonce [: authzid] ), in hex.
fn ha1(
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    authzid: Option<&str>,
) -> String {
    let mut inner = Md5::new();
    inner.update(latin1_or_utf8(user));
    inner.update(b":");
    inner.update(latin1_or_utf8(realm));
    inner.update(b":");
    inner.update(latin1_or_utf8(password));
    let mut outer = Md5::new();
    outer.update(inner.finalize());
    outer.update(format!(":{nonce}:{cnonce}"));
    if let Some(z) = authzid {
        outer.update(b":");
        outer.update(z.as_bytes());
    }
    hex(&outer.finalize())
}

/// hex(MD5( HA1 : nonce : nc : cnonce : qop : hex(MD5(A2)) )).
fn digest_response(ha1: &str, nonce: &str, nc: &str, cnonce: &str, qop: &str, a2: &str) -> String {
    let ha2 = hex(&Md5::digest(a2.as_bytes()));
    hex(&Md5::digest(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes()))
}

/// The directives of a digest-response: `key=value` or `key="value"` (with `\` escapes),
/// separated by commas and spaces; keys in lower case. A repeated directive is an error.
fn directives(text: &str) -> Result<BTreeMap<String, String>, SaslError> {
    let mut out = BTreeMap::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() {
            return Err(SaslError::Malformed(format!("no '=' after {}", &text[start..])));
        }
        let key = text[start..i].trim().to_ascii_lowercase();
        i += 1;
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => {
                        return Err(SaslError::Malformed(format!("unterminated value of {key}")))
                    }
                    Some(b'"') => break,
                    Some(b'\\') if i + 1 < b.len() => {
                        v.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
            String::from_utf8(v).map_err(|_| SaslError::Malformed("not UTF-8".into()))?
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            text[s..i].trim().to_string()
        };
        if out.insert(key.clone(), value).is_some() {
            return Err(SaslError::Malformed(format!("{key} given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> BTreeMap<String, String> {
        [("jaasuser".to_string(), "jaas_password".to_string())].into()
    }

    /// A client's digest-response computed as RFC 2831 says (independently of the server's
    /// code path: the same formulas, written out).
    fn client_response(user: &str, pw: &str, nonce: &str, authzid: Option<&str>) -> String {
        let cnonce = "OA6MHXh6VqTrRk";
        let uri = "zookeeper/zk-sasl-md5";
        let inner = Md5::digest(format!("{user}:zk-sasl-md5:{pw}").as_bytes());
        let mut a1 = inner.to_vec();
        a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
        if let Some(z) = authzid {
            a1.extend_from_slice(format!(":{z}").as_bytes());
        }
        let ha1 = hex(&Md5::digest(&a1));
        let ha2 = hex(&Md5::digest(format!("AUTHENTICATE:{uri}").as_bytes()));
        let resp =
            hex(&Md5::digest(format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}").as_bytes()));
        let mut s = format!(
            "charset=utf-8,username=\"{user}\",realm=\"zk-sasl-md5\",nonce=\"{nonce}\",nc=00000001,cnonce=\"{cnonce}\",digest-uri=\"{uri}\",maxbuf=65536,response={resp},qop=auth"
        );
        if let Some(z) = authzid {
            s.push_str(&format!(",authzid=\"{z}\""));
        }
        s
    }

    fn nonce_of(challenge: &[u8]) -> String {
        let d = directives(std::str::from_utf8(challenge).unwrap()).unwrap();
        assert_eq!(d["realm"], "zk-sasl-md5");
        assert_eq!(d["algorithm"], "md5-sess");
        assert_eq!(d["charset"], "utf-8");
        d["nonce"].clone()
    }

    #[test]
    fn the_java_and_pure_sasl_exchanges_succeed() {
        let users = users();
        for authzid in [Some("jaasuser"), None] {
            let mut s = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
            let Step::Challenge(c) = s.step(b"", b"0123456789abcdef").unwrap() else { panic!() };
            let nonce = nonce_of(&c);
            let r = client_response("jaasuser", "jaas_password", &nonce, authzid);
            match s.step(r.as_bytes(), b"").unwrap() {
                Step::Done { token, user } => {
                    assert_eq!(user, "jaasuser");
                    assert!(token.starts_with(b"rspauth="), "{token:?}");
                    assert_eq!(token.len(), "rspauth=".len() + 32);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(s.step(b"", b""), Err(SaslError::Over));
        }
    }

    #[test]
    fn a_response_made_by_the_jdks_sasl_client_is_accepted() {
        // Printed by JDK 17's Sasl.createSaslClient("DIGEST-MD5", authzid "jaasuser",
        // "zookeeper", "zk-sasl-md5") answering this challenge, as ZooKeeper's Java client
        // does (user jaasuser, password jaas_password).
        let users = users();
        let mut s = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
        s.resume("Q29ycmFsIHRlc3Qgbm9uY2U=".into());
        let jdk = "charset=utf-8,username=\"jaasuser\",realm=\"zk-sasl-md5\",\
                   nonce=\"Q29ycmFsIHRlc3Qgbm9uY2U=\",nc=00000001,\
                   cnonce=\"1HuvouUZEK6J8RtSQq3WjnQDJhSjL+0cKxGx41M1\",\
                   digest-uri=\"zookeeper/zk-sasl-md5\",maxbuf=65536,\
                   response=7dea03e824be6c2205d0fccb8055392e,qop=auth,authzid=\"jaasuser\"";
        match s.step(jdk.as_bytes(), b"").unwrap() {
            Step::Done { user, .. } => assert_eq!(user, "jaasuser"),
            other => panic!("{other:?}"),
        }
        // One digit of the digest changed: refused.
        let mut s = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
        s.resume("Q29ycmFsIHRlc3Qgbm9uY2U=".into());
        let forged = jdk.replace("7dea03e8", "7dea03e9");
        assert!(matches!(s.step(forged.as_bytes(), b""), Err(SaslError::WrongPassword(_))));
    }

    #[test]
    fn wrong_or_forged_responses_fail() {
        let users = users();
        let run = |f: &dyn Fn(&str) -> String| {
            let mut s = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
            let Step::Challenge(c) = s.step(b"", b"nonce-bytes").unwrap() else { panic!() };
            s.step(f(&nonce_of(&c)).as_bytes(), b"")
        };
        assert!(matches!(
            run(&|n| client_response("jaasuser", "wrong", n, None)),
            Err(SaslError::WrongPassword(_))
        ));
        assert!(matches!(
            run(&|n| client_response("baduser", "x", n, None)),
            Err(SaslError::UnknownUser(_))
        ));
        assert!(matches!(
            run(&|_| client_response("jaasuser", "jaas_password", "stale", None)),
            Err(SaslError::Refused(_))
        ));
        let swap = |from: &'static str, to: &'static str| {
            move |n: &str| client_response("jaasuser", "jaas_password", n, None).replace(from, to)
        };
        assert!(matches!(run(&swap("qop=auth", "qop=auth-conf")), Err(SaslError::Refused(_))));
        assert!(matches!(run(&swap("nc=00000001", "nc=00000002")), Err(SaslError::Refused(_))));
        assert!(matches!(
            run(&swap("zookeeper/zk-sasl-md5", "ldap/zk-sasl-md5")),
            Err(SaslError::Refused(_))
        ));
        assert!(matches!(
            run(&swap("realm=\"zk-sasl-md5\"", "realm=\"other\"")),
            Err(SaslError::Refused(_))
        ));
        assert!(matches!(
            run(&swap("charset=utf-8", "charset=latin1")),
            Err(SaslError::Refused(_))
        ));
        for garbage in ["", "username", "username=\"x", "\u{0}\u{1}", "a=1,a=2"] {
            assert!(run(&|_| garbage.to_string()).is_err(), "{garbage:?}");
        }
        let mut s = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
        s.step(b"", b"n").unwrap();
        assert!(s.step(&[0xff, 0xfe], b"").is_err(), "not UTF-8");
    }

    #[test]
    fn client_and_server_agree_and_each_catches_the_other_lying() {
        let users = users();
        let mut server = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
        let mut client = DigestClient::new("jaasuser", "jaas_password", "zookeeper", "zk-sasl-md5");
        let Step::Challenge(c) = server.step(b"", b"n1").unwrap() else { panic!() };
        let r = client.respond(&c, b"c1").unwrap();
        let Step::Done { token, user } = server.step(&r, b"").unwrap() else { panic!() };
        assert_eq!(user, "jaasuser");
        client.finish(&token).unwrap();
        assert!(client.finish(b"rspauth=00000000000000000000000000000000").is_err());
        // A client with the wrong password is refused by the server.
        let mut server = DigestServer::new("zookeeper", "zk-sasl-md5", &users);
        let mut liar = DigestClient::new("jaasuser", "guess", "zookeeper", "zk-sasl-md5");
        let Step::Challenge(c) = server.step(b"", b"n2").unwrap() else { panic!() };
        assert!(server.step(&liar.respond(&c, b"c2").unwrap(), b"").is_err());
        assert!(liar.respond(b"realm=\"x\",nonce=\"y\"", b"c").is_err(), "no md5-sess");
    }

    #[test]
    fn directives_parse_quotes_escapes_and_spaces() {
        let d = directives(r#"a=1, b="x,\"y\"" ,C=tok"#).unwrap();
        assert_eq!(d["a"], "1");
        assert_eq!(d["b"], "x,\"y\"");
        assert_eq!(d["c"], "tok");
    }
}
