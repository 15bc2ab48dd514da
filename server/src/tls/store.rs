//! Key and trust stores as ZooKeeper 3.8 reads them: JKS (its default), PKCS12 and PEM.
//!
//! * The type comes from `ssl.*.type` (JKS, PKCS12, PEM; case-insensitive) or else from the
//!   file name's last extension, exactly `.jks`, `.p12` or `.pem` (ZooKeeper's
//!   `KeyStoreFileType`: `.pfx` and upper case are not recognised). BCFKS is refused.
//! * As the JDK does (`keystore.type.compat`), a JKS store named PKCS12 or the reverse still
//!   loads: the format is read from the file's first bytes.
//! * JKS: the store's SHA-1 integrity digest is checked with the password given — also when it
//!   is empty, as ZooKeeper passes "" for an unset password (so an unset password fails on a
//!   store made with one, as it does on ZooKeeper); a private key is decrypted with the store
//!   password (ZooKeeper uses it as the key password).
//! * PEM keystore: one file with a PKCS#8 private key and the certificate chain; with a
//!   non-empty password the key must be an encrypted PKCS#8 key (PBES2). PEM truststore: every
//!   certificate in the file.

use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What went wrong reading a store. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The type could not be told.
    #[error("{0}: unable to auto-detect store file type from file name (use .jks, .p12 or .pem, or set the store's type)")]
    UnknownType(String),
    /// A type ZooKeeper names but Corral does not read.
    #[error("{0}: store type {1} is not supported")]
    Unsupported(String, String),
    /// The file could not be read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The integrity check failed.
    #[error("{0}: keystore was tampered with, or password was incorrect")]
    Integrity(String),
    /// The file is not what its type says.
    #[error("{0}: {1}")]
    Malformed(String, String),
    /// No private key, or no certificate with it.
    #[error("{0}: {1}")]
    Missing(String, String),
}

/// A store's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    /// Java KeyStore.
    Jks,
    /// PKCS#12.
    Pkcs12,
    /// PEM text.
    Pem,
}

impl StoreType {
    /// The type configured (`ssl.*.type`), or else the one the file name implies.
    pub fn of(location: &str, configured: Option<&str>) -> Result<StoreType, StoreError> {
        if let Some(t) = configured.map(str::trim).filter(|t| !t.is_empty()) {
            return match t.to_ascii_uppercase().as_str() {
                "JKS" => Ok(StoreType::Jks),
                "PKCS12" => Ok(StoreType::Pkcs12),
                "PEM" => Ok(StoreType::Pem),
                other => Err(StoreError::Unsupported(location.into(), other.into())),
            };
        }
        match location.rfind('.').map(|i| &location[i..]) {
            Some(".jks") => Ok(StoreType::Jks),
            Some(".p12") => Ok(StoreType::Pkcs12),
            Some(".pem") => Ok(StoreType::Pem),
            Some(".bcfks") => Err(StoreError::Unsupported(location.into(), "BCFKS".into())),
            _ => Err(StoreError::UnknownType(location.into())),
        }
    }
}

/// A server's (or peer's) own certificate chain and private key.
#[derive(Debug)]
pub struct KeyMaterial {
    /// The chain, the entity's certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

fn read(location: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(Path::new(location)).map_err(|e| StoreError::Io(location.into(), e))
}

const JKS_MAGIC: [u8; 4] = [0xFE, 0xED, 0xFE, 0xED];

/// Binary stores are told apart by their first bytes, whatever they were called.
fn sniff(data: &[u8], declared: StoreType) -> StoreType {
    match declared {
        StoreType::Pem => StoreType::Pem,
        _ if data.starts_with(&JKS_MAGIC) => StoreType::Jks,
        _ if data.first() == Some(&0x30) => StoreType::Pkcs12,
        other => other,
    }
}

/// Reads a keystore: the first private key entry and its chain.
pub fn load_key_store(
    location: &str,
    kind: StoreType,
    password: &str,
) -> Result<KeyMaterial, StoreError> {
    let data = read(location)?;
    let malformed = |m: String| StoreError::Malformed(location.into(), m);
    match sniff(&data, kind) {
        StoreType::Jks => {
            let store = jks::parse(&data, password).map_err(|e| match e {
                jks::Error::Integrity => StoreError::Integrity(location.into()),
                jks::Error::Malformed(m) => malformed(m),
            })?;
            let (key, chain) = store.keys.into_iter().next().ok_or_else(|| {
                StoreError::Missing(location.into(), "no private key entry".into())
            })?;
            let key = jks::decrypt_key(&key, password).map_err(|e| match e {
                jks::Error::Integrity => StoreError::Integrity(location.into()),
                jks::Error::Malformed(m) => malformed(m),
            })?;
            finish(location, chain, key)
        }
        StoreType::Pkcs12 => {
            let store = open_p12(location, &data, password)?;
            let (_, chain) = store.private_key_chain().ok_or_else(|| {
                StoreError::Missing(location.into(), "no private key entry".into())
            })?;
            let certs = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
            finish(location, certs, chain.key().as_der().to_vec())
        }
        StoreType::Pem => {
            let text = String::from_utf8_lossy(&data);
            let blocks = pem_blocks(&text);
            let key = blocks
                .iter()
                .find(|(label, _)| label.ends_with("PRIVATE KEY"))
                .ok_or_else(|| StoreError::Missing(location.into(), "no private key".into()))?;
            let key = match (key.0.as_str(), password.is_empty()) {
                ("ENCRYPTED PRIVATE KEY", false) => {
                    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(key.1.as_slice())
                        .map_err(|e| malformed(format!("encrypted private key: {e}")))?;
                    info.decrypt(password)
                        .map_err(|_| StoreError::Integrity(location.into()))?
                        .as_bytes()
                        .to_vec()
                }
                ("ENCRYPTED PRIVATE KEY", true) => {
                    return Err(malformed("the private key is encrypted and no password is set".into()))
                }
                ("PRIVATE KEY", true) => key.1.clone(),
                ("PRIVATE KEY", false) => {
                    return Err(malformed(
                        "a password is set, so the private key must be encrypted (ENCRYPTED PRIVATE KEY)".into(),
                    ))
                }
                (other, _) => {
                    return Err(malformed(format!(
                        "{other}: the private key must be PKCS#8 (BEGIN PRIVATE KEY)"
                    )))
                }
            };
            let certs = blocks
                .into_iter()
                .filter(|(l, _)| l.ends_with("CERTIFICATE"))
                .map(|b| b.1)
                .collect();
            finish(location, certs, key)
        }
    }
}

fn finish(location: &str, chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<KeyMaterial, StoreError> {
    if chain.is_empty() {
        return Err(StoreError::Missing(
            location.into(),
            "no certificate with the private key".into(),
        ));
    }
    Ok(KeyMaterial {
        chain: chain.into_iter().map(CertificateDer::from).collect(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
    })
}

/// A PKCS#12 store, every entry kept (a truststore's certificates have no key).
fn open_p12(
    location: &str,
    data: &[u8],
    password: &str,
) -> Result<p12_keystore::KeyStore, StoreError> {
    p12_keystore::KeyStore::from_pkcs12(data, password, p12_keystore::Pkcs12ImportPolicy::Relaxed)
        .map_err(|e| p12_error(location, e))
}

fn p12_error(location: &str, e: p12_keystore::error::Error) -> StoreError {
    let text = e.to_string();
    if text.to_ascii_lowercase().contains("mac") {
        StoreError::Integrity(location.into())
    } else {
        StoreError::Malformed(location.into(), text)
    }
}

/// Reads a truststore: every trusted certificate in it.
pub fn load_trust_store(
    location: &str,
    kind: StoreType,
    password: &str,
) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let data = read(location)?;
    let certs: Vec<Vec<u8>> = match sniff(&data, kind) {
        StoreType::Jks => {
            let store = jks::parse(&data, password).map_err(|e| match e {
                jks::Error::Integrity => StoreError::Integrity(location.into()),
                jks::Error::Malformed(m) => StoreError::Malformed(location.into(), m),
            })?;
            store.trusted
        }
        StoreType::Pkcs12 => {
            let store = open_p12(location, &data, password)?;
            store
                .entries()
                .filter_map(|(_, e)| match e {
                    p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
                    _ => None,
                })
                .collect()
        }
        StoreType::Pem => pem_blocks(&String::from_utf8_lossy(&data))
            .into_iter()
            .filter(|(l, _)| l.ends_with("CERTIFICATE"))
            .map(|b| b.1)
            .collect(),
    };
    if certs.is_empty() {
        return Err(StoreError::Missing(location.into(), "no trusted certificate".into()));
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

/// The PEM blocks of `text`: (label, decoded bytes), in file order. Blocks that do not decode
/// are skipped.
pub(crate) fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let after = &rest[begin + 11..];
        let Some(label_end) = after.find("-----") else { break };
        let label = after[..label_end].trim().to_string();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else { break };
        let b64: String = body_start[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push((label, der));
        }
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

/// The Java KeyStore format (the JDK's `JavaKeyStore` and `KeyProtector`).
mod jks {
    use sha1::{Digest, Sha1};

    pub enum Error {
        Integrity,
        Malformed(String),
    }

    /// A parsed store: private keys (protected key bytes, chain) and trusted certificates.
    pub struct Store {
        pub keys: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
        pub trusted: Vec<Vec<u8>>,
    }

    struct Cursor<'a> {
        data: &'a [u8],
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
            let end = self.at.checked_add(n).filter(|e| *e <= self.data.len());
            let end = end.ok_or_else(|| Error::Malformed("truncated JKS store".into()))?;
            let s = &self.data[self.at..end];
            self.at = end;
            Ok(s)
        }
        fn u16(&mut self) -> Result<u16, Error> {
            Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
        }
        fn u32(&mut self) -> Result<u32, Error> {
            Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
        }
        fn utf(&mut self) -> Result<(), Error> {
            let n = self.u16()? as usize;
            self.take(n).map(|_| ())
        }
        fn bytes(&mut self) -> Result<Vec<u8>, Error> {
            let n = self.u32()? as usize;
            if n > self.data.len() {
                return Err(Error::Malformed("JKS entry longer than the store".into()));
            }
            Ok(self.take(n)?.to_vec())
        }
    }

    /// The password as the JDK hashes it: each UTF-16 code unit, big-endian.
    fn password_bytes(password: &str) -> Vec<u8> {
        password.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    pub fn parse(data: &[u8], password: &str) -> Result<Store, Error> {
        if data.len() < 4 + 4 + 4 + 20 {
            return Err(Error::Malformed("too short for a JKS store".into()));
        }
        let (body, digest) = data.split_at(data.len() - 20);
        let mut h = Sha1::new();
        h.update(password_bytes(password));
        h.update(b"Mighty Aphrodite");
        h.update(body);
        if h.finalize().as_slice() != digest {
            return Err(Error::Integrity);
        }
        let mut c = Cursor { data: body, at: 0 };
        if c.take(4)? != super::JKS_MAGIC {
            return Err(Error::Malformed("not a JKS store (magic)".into()));
        }
        let version = c.u32()?;
        if version != 1 && version != 2 {
            return Err(Error::Malformed(format!("JKS version {version}")));
        }
        let count = c.u32()?;
        let mut store = Store { keys: Vec::new(), trusted: Vec::new() };
        let cert = |c: &mut Cursor| -> Result<Vec<u8>, Error> {
            if version == 2 {
                c.utf()?; // the certificate type, "X.509"
            }
            c.bytes()
        };
        for _ in 0..count {
            match c.u32()? {
                1 => {
                    c.utf()?; // alias
                    c.take(8)?; // date
                    let key = c.bytes()?;
                    let n = c.u32()? as usize;
                    if n > 64 {
                        return Err(Error::Malformed(format!("a chain of {n} certificates")));
                    }
                    let chain = (0..n).map(|_| cert(&mut c)).collect::<Result<_, _>>()?;
                    store.keys.push((key, chain));
                }
                2 => {
                    c.utf()?;
                    c.take(8)?;
                    store.trusted.push(cert(&mut c)?);
                }
                tag => return Err(Error::Malformed(format!("JKS entry tag {tag} (JCEKS?)"))),
            }
        }
        Ok(store)
    }

    /// The JDK key protector's OID (1.3.6.1.4.1.42.2.17.1.1), DER content bytes.
    const KEY_PROTECTOR: [u8; 11] = [0x2B, 0x06, 0x01, 0x04, 0x01, 0x2A, 0x02, 0x11, 0x01, 0x01, 0];

    /// Decrypts a protected private key: an EncryptedPrivateKeyInfo whose data is
    /// salt(20) ‖ (key ⊕ keystream) ‖ check(20), keystream blocks SHA1(pw ‖ previous), the
    /// first previous being the salt; check = SHA1(pw ‖ key).
    pub fn decrypt_key(protected: &[u8], password: &str) -> Result<Vec<u8>, Error> {
        let bad = || Error::Malformed("bad DER in a JKS private key".into());
        let der = |d| super::super::der::element(d).map(|(t, c, _, r)| (t, c, r)).ok_or_else(bad);
        let (tag, info, _) = der(protected)?;
        if tag != 0x30 {
            return Err(Error::Malformed("JKS private key is not a SEQUENCE".into()));
        }
        let (tag, alg, rest) = der(info)?;
        let (oid_tag, oid, _) = der(alg)?;
        if tag != 0x30 || oid_tag != 0x06 || oid != &KEY_PROTECTOR[..10] {
            return Err(Error::Malformed(
                "JKS private key not protected by the JDK key protector".into(),
            ));
        }
        let (tag, enc, _) = der(rest)?;
        if tag != 0x04 || enc.len() < 40 {
            return Err(Error::Malformed("JKS private key data".into()));
        }
        let pw = password_bytes(password);
        let (salt, rest) = enc.split_at(20);
        let (cipher, check) = rest.split_at(rest.len() - 20);
        let mut key = Vec::with_capacity(cipher.len());
        let mut prev: Vec<u8> = salt.to_vec();
        while key.len() < cipher.len() {
            let mut h = Sha1::new();
            h.update(&pw);
            h.update(&prev);
            prev = h.finalize().to_vec();
            for b in &prev {
                if key.len() == cipher.len() {
                    break;
                }
                key.push(cipher[key.len()] ^ b);
            }
        }
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(&key);
        if h.finalize().as_slice() != check {
            return Err(Error::Integrity);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> String {
        format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    const PW: &str = "apassword";

    #[test]
    fn the_type_comes_from_the_setting_or_the_exact_extension() {
        assert_eq!(StoreType::of("/a/b.jks", None).unwrap(), StoreType::Jks);
        assert_eq!(StoreType::of("/a/b.p12", None).unwrap(), StoreType::Pkcs12);
        assert_eq!(StoreType::of("/a/b.pem", None).unwrap(), StoreType::Pem);
        assert_eq!(StoreType::of("/a/b.bin", Some("pkcs12")).unwrap(), StoreType::Pkcs12);
        assert!(matches!(StoreType::of("/a/b.pfx", None), Err(StoreError::UnknownType(_))));
        assert!(matches!(StoreType::of("/a/b.PEM", None), Err(StoreError::UnknownType(_))));
        assert!(matches!(StoreType::of("/a/b.bcfks", None), Err(StoreError::Unsupported(..))));
        assert!(matches!(StoreType::of("/a/b", Some("JCEKS")), Err(StoreError::Unsupported(..))));
    }

    #[test]
    fn every_keystore_format_gives_the_same_key_and_chain() {
        let pem = load_key_store(&data("keystore.pem"), StoreType::Pem, "").unwrap();
        assert_eq!(pem.chain.len(), 2, "leaf and CA");
        for (file, kind, pw) in [
            ("keystore.jks", StoreType::Jks, PW),
            ("keystore.p12", StoreType::Pkcs12, PW),
            ("keystore-openssl.p12", StoreType::Pkcs12, PW),
            ("keystore-legacy.p12", StoreType::Pkcs12, PW),
            ("keystore-encrypted.pem", StoreType::Pem, PW),
            // Misnamed binary stores load as the JDK loads them.
            ("keystore.jks", StoreType::Pkcs12, PW),
            ("keystore.p12", StoreType::Jks, PW),
        ] {
            let k = load_key_store(&data(file), kind, pw).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(k.chain[0], pem.chain[0], "{file}: leaf");
            assert_eq!(k.key.secret_der(), pem.key.secret_der(), "{file}: key");
        }
    }

    #[test]
    fn a_wrong_or_missing_password_is_refused() {
        for (file, kind) in [
            ("keystore.jks", StoreType::Jks),
            ("keystore.p12", StoreType::Pkcs12),
            ("keystore-encrypted.pem", StoreType::Pem),
        ] {
            let e = load_key_store(&data(file), kind, "wrong").unwrap_err();
            assert!(
                matches!(e, StoreError::Integrity(_) | StoreError::Malformed(..)),
                "{file}: {e}"
            );
        }
        // ZooKeeper passes "" for an unset password: the JKS digest check fails.
        assert!(matches!(
            load_trust_store(&data("truststore.jks"), StoreType::Jks, ""),
            Err(StoreError::Integrity(_))
        ));
        // A plain PEM key with a password set, an encrypted one without.
        assert!(load_key_store(&data("keystore.pem"), StoreType::Pem, PW).is_err());
        assert!(load_key_store(&data("keystore-encrypted.pem"), StoreType::Pem, "").is_err());
    }

    #[test]
    fn every_truststore_format_gives_the_ca() {
        let ca = load_trust_store(&data("truststore.pem"), StoreType::Pem, "").unwrap();
        assert_eq!(ca.len(), 1);
        for (file, kind) in
            [("truststore.jks", StoreType::Jks), ("truststore.p12", StoreType::Pkcs12)]
        {
            let t =
                load_trust_store(&data(file), kind, PW).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(t, ca, "{file}");
        }
    }

    #[test]
    fn damaged_stores_are_errors_not_panics() {
        let jks = std::fs::read(data("keystore.jks")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for cut in [0, 3, 10, 40, jks.len() / 2, jks.len() - 1] {
            let p = dir.path().join("cut.jks");
            std::fs::write(&p, &jks[..cut]).unwrap();
            assert!(load_key_store(p.to_str().unwrap(), StoreType::Jks, PW).is_err(), "cut {cut}");
        }
        let mut flipped = jks.clone();
        flipped[100] ^= 1;
        let p = dir.path().join("flipped.jks");
        std::fs::write(&p, &flipped).unwrap();
        assert!(matches!(
            load_key_store(p.to_str().unwrap(), StoreType::Jks, PW),
            Err(StoreError::Integrity(_))
        ));
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "nothing here").unwrap();
        assert!(matches!(
            load_key_store(p.to_str().unwrap(), StoreType::Pem, ""),
            Err(StoreError::Missing(..))
        ));
        assert!(matches!(
            load_trust_store(p.to_str().unwrap(), StoreType::Pem, ""),
            Err(StoreError::Missing(..))
        ));
        assert!(matches!(
            load_trust_store("/nonexistent/x.pem", StoreType::Pem, ""),
            Err(StoreError::Io(..))
        ));
    }
}
