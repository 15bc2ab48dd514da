//! TLS as ZooKeeper 3.8 configures it: key and trust stores ([`store`]), the `ssl.*`
//! settings ([`settings`]), certificate checks and the x509 id ([`verify`]).

pub mod der;
pub mod settings;
pub mod store;
pub mod verify;

/// The cryptography: rustls over *ring* (post-quantum key exchange, which only rustls' other
/// provider has, is not offered; ZooKeeper 3.8 offers none either).
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The first byte of a TLS handshake record.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// TLS for clients: `secureClientPort` and `client.portUnification`.
#[derive(Debug)]
pub struct ClientTls {
    /// Where the TLS-only listener binds (`secureClientPort`), if it is set.
    pub secure_bind: Option<std::net::SocketAddr>,
    /// The rustls configuration from `ssl.*`.
    pub config: std::sync::Arc<rustls::ServerConfig>,
    /// `client.portUnification`: the plain port takes TLS clients too.
    pub port_unification: bool,
    /// `X509AuthenticationProvider.superUser`: the x509 id that is also super.
    pub super_user: Option<String>,
}

impl ClientTls {
    /// The TLS settings of `config`, if clients may come over TLS; an error if its `ssl.*`
    /// settings cannot be used (ZooKeeper does not start either).
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Option<ClientTls>, settings::TlsError> {
        if !config.client_tls_enabled() {
            return Ok(None);
        }
        let props = &config.system_properties;
        let tls = settings::TlsSettings::client(props)?.server_config()?;
        let secure_bind = match config.secure_client_port {
            None => None,
            Some(port) => {
                let host =
                    config.secure_client_port_address.clone().unwrap_or_else(|| "0.0.0.0".into());
                let text = format!("{}:{port}", host.trim_start_matches('[').trim_end_matches(']'));
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&text)
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| settings::TlsError::Setting {
                        key: "secureClientPortAddress".into(),
                        message: format!("{host}: no such address"),
                    })?;
                Some(addr)
            }
        };
        Ok(Some(ClientTls {
            secure_bind,
            config: tls,
            port_unification: props
                .get("zookeeper.client.portUnification")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            super_user: props
                .get("zookeeper.X509AuthenticationProvider.superUser")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
        }))
    }

    /// The ids a client certificate gives (already checked in the handshake): `x509` with the
    /// subject, and `super` when that subject is the configured superuser.
    pub fn ids_of(&self, leaf: &[u8]) -> Vec<crate::proto::Id> {
        let Some(subject) = verify::rfc2253_subject(leaf) else { return Vec::new() };
        // In ZooKeeper's order: the x509 id, then super.
        let mut ids = vec![crate::proto::Id { scheme: "x509".into(), id: subject.clone() }];
        if self.super_user.as_deref() == Some(subject.as_str()) {
            ids.push(crate::proto::Id { scheme: "super".into(), id: subject });
        }
        ids
    }
}

/// A client configuration (for tools and tests): trusts the CA certificates in `ca_pem`, and
/// presents the certificate in `cert_pem` with the PKCS#8 key in `key_pem` if given (an X.509
/// v1 certificate too: it is handed to rustls as it is).
pub fn pem_client_config(
    ca_pem: &str,
    cert_and_key: Option<(&str, &str)>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, settings::TlsError> {
    use std::sync::Arc;
    let provider = Arc::new(provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in store::load_trust_store(ca_pem, store::StoreType::Pem, "")? {
        roots.add(c).map_err(|e| settings::TlsError::Setting {
            key: ca_pem.into(),
            message: e.to_string(),
        })?;
    }
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| settings::TlsError::Setting {
            key: "protocols".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots);
    let Some((cert, key)) = cert_and_key else { return Ok(Arc::new(b.with_no_client_auth())) };
    let chain = store::load_trust_store(cert, store::StoreType::Pem, "")?;
    let text = std::fs::read_to_string(key).map_err(|e| store::StoreError::Io(key.into(), e))?;
    let key_der = store::pem_blocks(&text)
        .into_iter()
        .find(|(label, _)| label == "PRIVATE KEY")
        .map(|(_, der)| der)
        .ok_or_else(|| store::StoreError::Missing(key.into(), "no PKCS#8 private key".into()))?;
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()))
        .map_err(|e| settings::TlsError::Setting { key: key.into(), message: e.to_string() })?;
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, key));
    Ok(Arc::new(b.with_client_cert_resolver(Arc::new(settings::FixedClientCert(certified)))))
}
