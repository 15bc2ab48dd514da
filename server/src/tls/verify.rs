//! Checking a peer's certificate as ZooKeeper's trust manager does (PKIX against the trust
//! store), including X.509 v1 certificates: kazoo's test harness, like many hand-made test
//! and internal PKIs, issues v1 leaf certificates, which the JDK accepts and webpki refuses.
//!
//! A v3 chain goes to webpki unchanged. A chain whose leaf is v1 or v2 is checked here: each
//! certificate's signature by the next (an intermediate sent by the peer, which must be a CA,
//! or a trust anchor), each within its validity period, at most 6 deep; the handshake
//! signature is checked against the leaf's public key with the provider's algorithms.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use super::der;

/// Verifies client certificates against a trust store; `mandatory` as `ssl.clientAuth=need`.
#[derive(Debug)]
pub struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
    subjects: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
    mandatory: bool,
}

impl ClientVerifier {
    /// A verifier trusting `roots`.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        mandatory: bool,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ClientVerifier, String> {
        let store = root_store(&roots)?;
        let subjects = roots
            .iter()
            .filter_map(|r| X509Certificate::from_der(r).ok())
            .map(|(_, c)| DistinguishedName::from(c.subject().as_raw().to_vec()))
            .collect();
        let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            provider.clone(),
        );
        if !mandatory {
            b = b.allow_unauthenticated();
        }
        let webpki = b.build().map_err(|e| format!("{e}"))?;
        Ok(ClientVerifier {
            webpki,
            roots,
            subjects,
            algs: provider.signature_verification_algorithms,
            mandatory,
        })
    }

    /// Whether `cert` is an X.509 v3 certificate.
    pub fn is_v3(cert: &[u8]) -> bool {
        matches!(X509Certificate::from_der(cert), Ok((_, c)) if c.version() == X509Version::V3)
    }
}

/// webpki's trust anchors from the trust store (a v1 anchor is fine for webpki too: only its
/// subject and key are used).
fn root_store(roots: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).map_err(|e| format!("a trusted certificate: {e}"))?;
    }
    Ok(store)
}

fn bad(e: CertificateError) -> Error {
    Error::InvalidCertificate(e)
}

/// Whether `issuer` signed `cert` (both DER), with one of `algs`.
fn signed_by(cert: &[u8], issuer: &X509Certificate<'_>, algs: &WebPkiSupportedAlgorithms) -> bool {
    let Some((tbs, sig_alg, sig)) = der::certificate_parts(cert) else { return false };
    let Some((key_alg, key)) = der::spki_parts(issuer.public_key().raw) else { return false };
    algs.all.iter().any(|a| {
        a.signature_alg_id().as_ref() == sig_alg
            && a.public_key_alg_id().as_ref() == key_alg
            && a.verify_signature(key, tbs, sig).is_ok()
    })
}

fn within(c: &X509Certificate<'_>, now: UnixTime) -> bool {
    let t = now.as_secs() as i64;
    c.validity().not_before.timestamp() <= t && t <= c.validity().not_after.timestamp()
}

/// Checks a chain whose leaf webpki cannot read (v1/v2): signatures up to a trust anchor.
pub fn verify_legacy_chain(
    end_entity: &[u8],
    intermediates: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    algs: &WebPkiSupportedAlgorithms,
    now: UnixTime,
) -> Result<(), Error> {
    let (_, mut current) =
        X509Certificate::from_der(end_entity).map_err(|_| bad(CertificateError::BadEncoding))?;
    let mut current_der: &[u8] = end_entity;
    if !within(&current, now) {
        return Err(bad(CertificateError::Expired));
    }
    for _ in 0..6 {
        for r in roots {
            let Ok((_, root)) = X509Certificate::from_der(r) else { continue };
            if root.subject().as_raw() == current.issuer().as_raw()
                && signed_by(current_der, &root, algs)
            {
                return Ok(());
            }
        }
        let next = intermediates.iter().find_map(|i| {
            let (_, c) = X509Certificate::from_der(i).ok()?;
            (c.subject().as_raw() == current.issuer().as_raw()
                && c.is_ca()
                && within(&c, now)
                && signed_by(current_der, &c, algs))
            .then_some((c, i.as_ref()))
        });
        match next {
            Some((c, d)) => {
                current = c;
                current_der = d;
            }
            None => return Err(bad(CertificateError::UnknownIssuer)),
        }
    }
    Err(bad(CertificateError::UnknownIssuer))
}

/// Checks a handshake signature against the certificate's public key.
fn verify_with_cert(
    message: &[u8],
    cert: &[u8],
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, Error> {
    let (_, c) = X509Certificate::from_der(cert).map_err(|_| bad(CertificateError::BadEncoding))?;
    let (key_alg, key) =
        der::spki_parts(c.public_key().raw).ok_or(bad(CertificateError::BadEncoding))?;
    let candidates = algs.mapping.iter().find(|(s, _)| *s == dss.scheme).map(|(_, a)| *a).ok_or(
        Error::PeerMisbehaved(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme),
    )?;
    for a in candidates {
        if a.public_key_alg_id().as_ref() == key_alg {
            return a
                .verify_signature(key, message, dss.signature())
                .map(|_| HandshakeSignatureValid::assertion())
                .map_err(|_| bad(CertificateError::BadSignature));
        }
    }
    Err(bad(CertificateError::BadSignature))
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if Self::is_v3(end_entity) {
            return self.webpki.verify_client_cert(end_entity, intermediates, now);
        }
        verify_legacy_chain(end_entity, intermediates, &self.roots, &self.algs, now)
            .map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if Self::is_v3(cert) {
            return self.webpki.verify_tls12_signature(message, cert, dss);
        }
        verify_with_cert(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if Self::is_v3(cert) {
            return self.webpki.verify_tls13_signature(message, cert, dss);
        }
        use SignatureScheme as S;
        let tls13 = matches!(
            dss.scheme,
            S::ECDSA_NISTP256_SHA256
                | S::ECDSA_NISTP384_SHA384
                | S::ECDSA_NISTP521_SHA512
                | S::RSA_PSS_SHA256
                | S::RSA_PSS_SHA384
                | S::RSA_PSS_SHA512
                | S::ED25519
                | S::ED448
        );
        if !tls13 {
            return Err(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        verify_with_cert(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Verifies the certificate of a server this one connects to (a quorum peer) against the
/// trust store: v3 chains through webpki (its name checked against the address dialled when
/// `hostname_verification`), v1/v2 leaves by signatures up to a trust anchor.
#[derive(Debug)]
pub struct PeerVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    roots: Vec<CertificateDer<'static>>,
    algs: WebPkiSupportedAlgorithms,
    hostname_verification: bool,
}

impl PeerVerifier {
    /// A verifier trusting `roots`.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        hostname_verification: bool,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<PeerVerifier, String> {
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(root_store(&roots)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("{e}"))?;
        Ok(PeerVerifier {
            webpki,
            roots,
            algs: provider.signature_verification_algorithms,
            hostname_verification,
        })
    }
}

impl rustls::client::danger::ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, Error> {
        if !ClientVerifier::is_v3(end_entity) {
            return verify_legacy_chain(end_entity, intermediates, &self.roots, &self.algs, now)
                .map(|_| rustls::client::danger::ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }))
                if !self.hostname_verification =>
            {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_with_cert(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_with_cert(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Whether a certificate names `ip` (an IP address SAN, or, without SANs, its CN), as
/// ZooKeeper's quorum hostname verification checks the peer that connected.
pub fn names_address(cert: &[u8], ip: std::net::IpAddr) -> bool {
    let Ok((_, c)) = X509Certificate::from_der(cert) else { return false };
    match c.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().any(|g| match g {
            x509_parser::extensions::GeneralName::IPAddress(b) => match (b.len(), ip) {
                (4, std::net::IpAddr::V4(v4)) => *b == v4.octets(),
                (16, std::net::IpAddr::V6(v6)) => *b == v6.octets(),
                _ => false,
            },
            x509_parser::extensions::GeneralName::DNSName(d) => {
                ip.is_loopback() && d.eq_ignore_ascii_case("localhost")
            }
            _ => false,
        }),
        _ => c.subject().iter_common_name().any(|cn| {
            cn.as_str().is_ok_and(|n| n == ip.to_string() || (ip.is_loopback() && n == "localhost"))
        }),
    }
}

/// The id ZooKeeper's x509 provider gives a client: its certificate's subject as the JDK's
/// `X500Principal.getName()` writes it (RFC 2253): the last RDN first, `,` between RDNs and
/// `+` within one, the keywords CN, C, L, ST, O, OU, STREET, DC and UID, any other attribute
/// as its dotted OID with `#` and the value's DER in hex, and RFC 2253's escapes.
pub fn rfc2253_subject(cert: &[u8]) -> Option<String> {
    let (_, c) = X509Certificate::from_der(cert).ok()?;
    let mut rdns = Vec::new();
    for rdn in c.subject().iter_rdn() {
        let mut parts = Vec::new();
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            let keyword = match oid.as_str() {
                "2.5.4.3" => Some("CN"),
                "2.5.4.6" => Some("C"),
                "2.5.4.7" => Some("L"),
                "2.5.4.8" => Some("ST"),
                "2.5.4.10" => Some("O"),
                "2.5.4.11" => Some("OU"),
                "2.5.4.9" => Some("STREET"),
                "0.9.2342.19200300.100.1.25" => Some("DC"),
                "0.9.2342.19200300.100.1.1" => Some("UID"),
                _ => None,
            };
            let text = atv.as_str().ok().map(str::to_owned).or_else(|| {
                // TeletexString, BMPString, UniversalString: as text where they decode.
                let v = atv.attr_value();
                match v.tag().0 {
                    0x14 => Some(v.data.iter().map(|b| *b as char).collect()),
                    0x1E if v.data.len() % 2 == 0 => {
                        let units: Vec<u16> =
                            v.data.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
                        String::from_utf16(&units).ok()
                    }
                    _ => None,
                }
            });
            parts.push(match (keyword, text) {
                (Some(k), Some(t)) => format!("{k}={}", escape(&t)),
                (k, _) => {
                    let raw = x509_parser::der_parser::asn1_rs::ToDer::to_der_vec(atv.attr_value())
                        .ok()?;
                    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}=#{hex}", k.map(str::to_owned).unwrap_or(oid))
                }
            });
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let n = v.chars().count();
    for (i, ch) in v.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i + 1 == n && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::store::{load_key_store, load_trust_store, StoreType};

    fn data(name: &str) -> String {
        format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn pem_cert(name: &str) -> CertificateDer<'static> {
        load_trust_store(&data(name), StoreType::Pem, "").unwrap().remove(0)
    }

    fn algs() -> WebPkiSupportedAlgorithms {
        crate::tls::provider().signature_verification_algorithms
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn a_v1_leaf_signed_by_a_trusted_ca_is_accepted_and_others_are_not() {
        let ca = pem_cert("ca.pem");
        let client = pem_cert("client-cert.pem");
        assert!(!ClientVerifier::is_v3(&client), "the fixture is v1");
        verify_legacy_chain(&client, &[], std::slice::from_ref(&ca), &algs(), now()).unwrap();
        // Not trusted: the server's own leaf as the only root.
        let other = pem_cert("server-cert.pem");
        assert!(verify_legacy_chain(&client, &[], &[other], &algs(), now()).is_err());
        // A damaged signature.
        let mut forged = client.to_vec();
        let at = forged.len() - 5;
        forged[at] ^= 0x40;
        assert!(
            verify_legacy_chain(&forged, &[], std::slice::from_ref(&ca), &algs(), now()).is_err()
        );
        // Outside its validity period (in 2200).
        let late = UnixTime::since_unix_epoch(std::time::Duration::from_secs(7_258_118_400));
        assert!(matches!(
            verify_legacy_chain(&client, &[], &[ca], &algs(), late),
            Err(Error::InvalidCertificate(CertificateError::Expired))
        ));
    }

    #[test]
    fn the_verifier_takes_v3_chains_through_webpki_and_v1_leaves_itself() {
        let provider = Arc::new(crate::tls::provider());
        let ca = pem_cert("ca.pem");
        let v = ClientVerifier::new(vec![ca], true, provider).unwrap();
        assert!(v.client_auth_mandatory());
        assert_eq!(v.root_hint_subjects().len(), 1);
        v.verify_client_cert(&pem_cert("client-cert.pem"), &[], now()).unwrap();
        // A v3 leaf: webpki, which checks its extended key usage too (clientAuth is there).
        v.verify_client_cert(&pem_cert("server-cert.pem"), &[], now()).unwrap();
        assert!(v.verify_client_cert(&pem_cert("ca.pem"), &[], now()).is_err(), "a CA as a leaf");
    }

    #[test]
    fn subjects_are_written_as_the_jdk_writes_them() {
        // Expected values printed by the JDK 17's X500Principal.getName() for these files.
        assert_eq!(rfc2253_subject(&pem_cert("client-cert.pem")).unwrap(), "CN=client");
        assert_eq!(
            rfc2253_subject(&pem_cert("server-cert.pem")).unwrap(),
            "O=Corral,OU=Test,CN=localhost"
        );
        assert_eq!(rfc2253_subject(&pem_cert("ca.pem")).unwrap(), "O=Corral,CN=Corral Test CA");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" #x "), "\\ #x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert!(rfc2253_subject(b"not a certificate").is_none());
        let key = load_key_store(&data("keystore.pem"), StoreType::Pem, "").unwrap();
        assert_eq!(rfc2253_subject(&key.chain[1]).unwrap(), "O=Corral,CN=Corral Test CA");
    }
}
