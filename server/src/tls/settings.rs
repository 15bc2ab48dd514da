//! ZooKeeper's `ssl.*` settings (client port) and `ssl.quorum.*` (quorum), read from the
//! system properties a zoo.cfg or `-D` gave, and the rustls configuration they make.
//!
//! | key (after the prefix) | meaning, default |
//! |---|---|
//! | `keyStore.location`, `.password`, `.passwordPath`, `.type` | this server's key and chain |
//! | `trustStore.location`, `.password`, `.passwordPath`, `.type` | trusted CAs for peers' certificates |
//! | `clientAuth` | `need` (default), `want`, `none` |
//! | `protocol` | `TLSv1.2` (default; `TLSv1.3`, or `TLS` for both) |
//! | `enabledProtocols` | comma list; default: `protocol` alone |
//! | `ciphersuites` | comma list of JDK names; default: the ECDHE AES-GCM suites ZooKeeper lists first |
//! | `hostnameVerification` | default true; the client port never checks clients' names |
//! | `handshakeDetectionTimeoutMillis` | 5000; quorum port unification |
//!
//! A `passwordPath` file's content is the password (one trailing line separator dropped), and
//! wins over `password`. An unset password is "" (as ZooKeeper passes it).

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::store::{load_key_store, load_trust_store, StoreError, StoreType};
use super::verify::ClientVerifier;

/// A TLS setting that cannot be used. Each says which key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key's value is wrong.
    #[error("{key}: {message}")]
    Setting {
        /// The key (as a system property).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// `ssl.clientAuth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate asked for.
    None,
    /// Asked for; a client without one is let in with no x509 id.
    Want,
    /// Required.
    Need,
}

/// Where a store is and how to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// `*.location`.
    pub location: String,
    /// `*.password` or the content of `*.passwordPath`.
    pub password: String,
    /// `*.type`, or from the file name.
    pub kind: StoreType,
}

/// One family of TLS settings (client port or quorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `zookeeper.ssl.` or `zookeeper.ssl.quorum.`.
    pub prefix: &'static str,
    /// This server's key and chain.
    pub key_store: Option<StoreSpec>,
    /// Trusted CAs.
    pub trust_store: Option<StoreSpec>,
    /// `clientAuth`.
    pub client_auth: ClientAuth,
    /// Protocol versions enabled, as the JDK names them.
    pub protocols: Vec<String>,
    /// Cipher suites (JDK names), `None` for the default.
    pub ciphersuites: Option<Vec<String>>,
    /// `hostnameVerification`.
    pub hostname_verification: bool,
    /// `handshakeDetectionTimeoutMillis`.
    pub handshake_detection_timeout_ms: u64,
}

/// The client port's prefix.
pub const CLIENT_PREFIX: &str = "zookeeper.ssl.";
/// The quorum's prefix.
pub const QUORUM_PREFIX: &str = "zookeeper.ssl.quorum.";

/// ZooKeeper's default suites that rustls has (it has no CBC suites), in its order.
const DEFAULT_TLS12_SUITES: [&str; 4] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
];

impl TlsSettings {
    /// The client port's settings (`ssl.*`).
    pub fn client(props: &BTreeMap<String, String>) -> Result<TlsSettings, TlsError> {
        Self::read(props, CLIENT_PREFIX)
    }

    /// The quorum's settings (`ssl.quorum.*`).
    pub fn quorum(props: &BTreeMap<String, String>) -> Result<TlsSettings, TlsError> {
        Self::read(props, QUORUM_PREFIX)
    }

    fn read(
        props: &BTreeMap<String, String>,
        prefix: &'static str,
    ) -> Result<TlsSettings, TlsError> {
        let get = |k: &str| {
            props
                .get(&format!("{prefix}{k}"))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let err =
            |k: &str, message: String| TlsError::Setting { key: format!("{prefix}{k}"), message };
        let store = |what: &str| -> Result<Option<StoreSpec>, TlsError> {
            let Some(location) = get(&format!("{what}.location")) else { return Ok(None) };
            let password = match get(&format!("{what}.passwordPath")) {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        err(&format!("{what}.passwordPath"), format!("{path}: {e}"))
                    })?;
                    text.strip_suffix('\n').unwrap_or(&text).to_string()
                }
                None => props.get(&format!("{prefix}{what}.password")).cloned().unwrap_or_default(),
            };
            let kind = StoreType::of(&location, get(&format!("{what}.type")).as_deref())?;
            Ok(Some(StoreSpec { location, password, kind }))
        };
        let client_auth = match get("clientAuth").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("need") => ClientAuth::Need,
            Some("want") => ClientAuth::Want,
            Some("none") => ClientAuth::None,
            Some(other) => {
                return Err(err("clientAuth", format!("{other}: use need, want or none")))
            }
        };
        let protocol = get("protocol").unwrap_or_else(|| "TLSv1.2".into());
        let protocols = match get("enabledProtocols") {
            Some(list) => {
                list.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
            }
            None => vec![protocol],
        };
        let ciphersuites = get("ciphersuites").map(|l| {
            l.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
        });
        let hostname_verification = match get("hostnameVerification").as_deref() {
            None => true,
            Some(v) => !v.eq_ignore_ascii_case("false"),
        };
        let handshake_detection_timeout_ms = match get("handshakeDetectionTimeoutMillis") {
            None => 5000,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => n as u64,
                _ => {
                    tracing::warn!(key = %format!("{prefix}handshakeDetectionTimeoutMillis"), value = %v, "invalid; using 5000");
                    5000
                }
            },
        };
        Ok(TlsSettings {
            prefix,
            key_store: store("keyStore")?,
            trust_store: store("trustStore")?,
            client_auth,
            protocols,
            ciphersuites,
            hostname_verification,
            handshake_detection_timeout_ms,
        })
    }

    fn versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
        let mut out: Vec<&'static SupportedProtocolVersion> = Vec::new();
        for p in &self.protocols {
            let add: &[&'static SupportedProtocolVersion] = match p.as_str() {
                "TLSv1.3" => &[&rustls::version::TLS13],
                "TLSv1.2" => &[&rustls::version::TLS12],
                "TLS" => &[&rustls::version::TLS13, &rustls::version::TLS12],
                other => {
                    tracing::warn!(key = %format!("{}enabledProtocols", self.prefix), protocol = other, "not supported (only TLSv1.2 and TLSv1.3); left out");
                    &[]
                }
            };
            for v in add {
                if !out.iter().any(|o| o.version == v.version) {
                    out.push(v);
                }
            }
        }
        if out.is_empty() {
            return Err(TlsError::Setting {
                key: format!("{}enabledProtocols", self.prefix),
                message: format!(
                    "{}: none of these is TLSv1.2 or TLSv1.3",
                    self.protocols.join(",")
                ),
            });
        }
        Ok(out)
    }

    /// The provider with this configuration's cipher suites.
    fn provider(&self) -> Result<CryptoProvider, TlsError> {
        let mut p = super::provider();
        let name = |s: &SupportedCipherSuite| {
            let n = format!("{:?}", s.suite());
            // rustls writes TLS 1.3 suites TLS13_*, the JDK TLS_*.
            n.strip_prefix("TLS13_").map(|r| format!("TLS_{r}")).unwrap_or(n)
        };
        let wanted: Vec<String> = match &self.ciphersuites {
            Some(list) => list.clone(),
            None => {
                let mut v: Vec<String> =
                    DEFAULT_TLS12_SUITES.iter().map(|s| s.to_string()).collect();
                v.extend(["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"].map(String::from));
                v
            }
        };
        let all = std::mem::take(&mut p.cipher_suites);
        p.cipher_suites =
            wanted.iter().filter_map(|w| all.iter().find(|s| name(s) == *w).copied()).collect();
        if p.cipher_suites.is_empty() {
            return Err(TlsError::Setting {
                key: format!("{}ciphersuites", self.prefix),
                message: format!(
                    "none of {} is available (available: {})",
                    wanted.join(","),
                    all.iter().map(name).collect::<Vec<_>>().join(",")
                ),
            });
        }
        Ok(p)
    }

    /// The server side: this server's certificate, and clients' checked per `clientAuth`.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(self.provider()?);
        let Some(ks) = &self.key_store else {
            return Err(TlsError::Setting {
                key: format!("{}keyStore.location", self.prefix),
                message: "not set: a TLS listener needs this server's key and certificate".into(),
            });
        };
        let material = load_key_store(&ks.location, ks.kind, &ks.password)?;
        let key = provider.key_provider.load_private_key(material.key).map_err(|e| {
            TlsError::Setting {
                key: format!("{}keyStore.location", self.prefix),
                message: format!("{}: the private key cannot be used: {e}", ks.location),
            }
        })?;
        // Built by hand: rustls' usual path parses the certificate with webpki, which refuses
        // X.509 v1 certificates (kazoo's harness makes its server one so).
        let certified = Arc::new(CertifiedKey::new(material.chain, key));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| TlsError::Setting {
                key: format!("{}enabledProtocols", self.prefix),
                message: format!("{e}"),
            })?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let Some(ts) = &self.trust_store else {
                    return Err(TlsError::Setting {
                        key: format!("{}trustStore.location", self.prefix),
                        message: "not set: clients' certificates cannot be checked (set it, or clientAuth=none)".into(),
                    });
                };
                let roots = load_trust_store(&ts.location, ts.kind, &ts.password)?;
                let verifier = ClientVerifier::new(roots, auth == ClientAuth::Need, provider)
                    .map_err(|message| TlsError::Setting {
                        key: format!("{}trustStore.location", self.prefix),
                        message,
                    })?;
                builder.with_client_cert_verifier(Arc::new(verifier))
            }
        };
        let config = builder.with_cert_resolver(Arc::new(OneCert(certified)));
        Ok(Arc::new(config))
    }
}

impl TlsSettings {
    /// The dialling side (a quorum learner or election peer): this server's certificate as
    /// its client certificate, the peer's checked against the trust store.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let provider = Arc::new(self.provider()?);
        let key_err = |message: String| TlsError::Setting {
            key: format!("{}keyStore.location", self.prefix),
            message,
        };
        let Some(ks) = &self.key_store else {
            return Err(key_err("not set: TLS between servers needs this server's key".into()));
        };
        let Some(ts) = &self.trust_store else {
            return Err(TlsError::Setting {
                key: format!("{}trustStore.location", self.prefix),
                message: "not set: the other servers' certificates cannot be checked".into(),
            });
        };
        let material = load_key_store(&ks.location, ks.kind, &ks.password)?;
        let key = provider.key_provider.load_private_key(material.key).map_err(|e| {
            key_err(format!("{}: the private key cannot be used: {e}", ks.location))
        })?;
        let certified = Arc::new(CertifiedKey::new(material.chain, key));
        let roots = load_trust_store(&ts.location, ts.kind, &ts.password)?;
        let verifier =
            super::verify::PeerVerifier::new(roots, self.hostname_verification, provider.clone())
                .map_err(|message| TlsError::Setting {
                key: format!("{}trustStore.location", self.prefix),
                message,
            })?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| TlsError::Setting {
                key: format!("{}enabledProtocols", self.prefix),
                message: format!("{e}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(FixedClientCert(certified)));
        Ok(Arc::new(config))
    }
}

/// Always the same client certificate.
#[derive(Debug)]
pub struct FixedClientCert(pub Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Always the same certificate.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> String {
        format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("zookeeper.ssl.{k}"), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_zookeepers() {
        let s = TlsSettings::client(&BTreeMap::new()).unwrap();
        assert_eq!(s.client_auth, ClientAuth::Need);
        assert_eq!(s.protocols, vec!["TLSv1.2".to_string()]);
        assert!(s.hostname_verification);
        assert_eq!(s.handshake_detection_timeout_ms, 5000);
        assert!(s.key_store.is_none() && s.trust_store.is_none());
        assert!(s.server_config().is_err(), "no keystore");
    }

    #[test]
    fn a_server_config_from_every_store_format() {
        for (ks, ts) in [
            ("keystore.jks", "truststore.jks"),
            ("keystore.p12", "truststore.p12"),
            ("keystore-encrypted.pem", "truststore.pem"),
            ("keystore-v1.jks", "truststore.jks"),
        ] {
            let p = props(&[
                ("keyStore.location", &data(ks)),
                ("keyStore.password", "apassword"),
                ("trustStore.location", &data(ts)),
                ("trustStore.password", "apassword"),
            ]);
            TlsSettings::client(&p)
                .unwrap()
                .server_config()
                .unwrap_or_else(|e| panic!("{ks}: {e}"));
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = TlsSettings::client(&props(&[("clientAuth", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("zookeeper.ssl.clientAuth"), "{e}");
        let base = [("keyStore.location", data("keystore.pem"))];
        let with = |extra: &[(&str, &str)]| {
            let mut v: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
            v.extend_from_slice(extra);
            TlsSettings::client(&props(&v)).unwrap().server_config().map(|_| ())
        };
        let e = with(&[("clientAuth", "need")]).unwrap_err();
        assert!(e.to_string().contains("trustStore.location"), "{e}");
        with(&[("clientAuth", "none")]).unwrap();
        let e = with(&[("clientAuth", "none"), ("enabledProtocols", "TLSv1,SSLv3")]).unwrap_err();
        assert!(e.to_string().contains("enabledProtocols"), "{e}");
        let e = with(&[("clientAuth", "none"), ("ciphersuites", "TLS_RSA_WITH_RC4_128_MD5")])
            .unwrap_err();
        assert!(e.to_string().contains("ciphersuites"), "{e}");
        with(&[("clientAuth", "none"), ("protocol", "TLSv1.3")]).unwrap();
        let e =
            TlsSettings::client(&props(&[("keyStore.location", "/x/keystore.pfx")])).unwrap_err();
        assert!(e.to_string().contains("auto-detect"), "{e}");
    }

    #[test]
    fn a_password_file_wins_and_loses_one_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "apassword\n").unwrap();
        let p = props(&[
            ("keyStore.location", &data("keystore.jks")),
            ("keyStore.password", "wrong"),
            ("keyStore.passwordPath", f.to_str().unwrap()),
            ("clientAuth", "none"),
        ]);
        let s = TlsSettings::client(&p).unwrap();
        assert_eq!(s.key_store.as_ref().unwrap().password, "apassword");
        s.server_config().unwrap();
    }
}
