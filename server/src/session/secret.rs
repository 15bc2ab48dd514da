//! Session passwords that nobody can compute from a session id.
//!
//! ZooKeeper derives a session's password from `java.util.Random(id ^ constant)`, so anyone who
//! learns a session id (exists' ephemeralOwner, `cons`, `dump`, `wchc`) can take the session
//! over. Corral's sessions get `HMAC-SHA256(secret, id)` cut to 16 bytes instead, with a random
//! secret made once per database and kept beside its data. Sessions imported from an Apache
//! ZooKeeper data directory keep ZooKeeper's password ([`super::ids::session_password`]), so
//! their clients can reconnect after the move; the secret file lists their ids.
//!
//! File format (`<dataDir>/corral-v1/session-secret`, text): a first line
//! `corral-session-secret 1`, a line with the 32-byte key in hex, then one line
//! `zookeeper <hex session id>` for each imported session. Written to a temporary name,
//! fsynced, renamed and the directory fsynced, before any session uses it.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use corral_engine::io::Vfs;
use hmac::{KeyInit, Mac};

use super::ids::{session_password, PASSWORD_LEN};

/// The secret file's name inside `<dataDir>/corral-v1/`.
pub const SECRET_FILE: &str = "session-secret";

const MAGIC: &str = "corral-session-secret 1";
const KEY_LEN: usize = 32;

/// A database's session secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret {
    key: [u8; KEY_LEN],
    zookeeper: BTreeSet<i64>,
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("SessionSecret").field("zookeeper_sessions", &self.zookeeper.len()).finish()
    }
}

impl SessionSecret {
    /// A new secret from the operating system's randomness.
    pub fn generate() -> SessionSecret {
        use rand::RngCore;
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        SessionSecret { key, zookeeper: BTreeSet::new() }
    }

    /// A secret with a given key (tests, the simulator).
    pub fn from_key(key: [u8; KEY_LEN]) -> SessionSecret {
        SessionSecret { key, zookeeper: BTreeSet::new() }
    }

    /// Marks sessions imported from Apache ZooKeeper: they keep ZooKeeper's password.
    pub fn keep_zookeeper_passwords(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.zookeeper.extend(ids);
    }

    /// The password of session `id`.
    pub fn password(&self, id: i64) -> [u8; PASSWORD_LEN] {
        if self.zookeeper.contains(&id) {
            return session_password(id);
        }
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(&id.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; PASSWORD_LEN];
        out.copy_from_slice(&full[..PASSWORD_LEN]);
        out
    }

    /// True if `presented` is session `id`'s password (compared in constant time).
    pub fn verify(&self, id: i64, presented: &[u8]) -> bool {
        let want = self.password(id);
        presented.len() == want.len()
            && presented.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The file's text.
    pub fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\n");
        for b in self.key {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        for id in &self.zookeeper {
            s.push_str(&format!("zookeeper {:x}\n", *id as u64));
        }
        s
    }

    /// Parses the file's text.
    pub fn decode(text: &str) -> Result<SessionSecret, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("not a session secret file (no {MAGIC:?} line)"));
        }
        let hex = lines.next().ok_or("no key line")?;
        if hex.len() != 2 * KEY_LEN {
            return Err(format!("the key line has {} characters, not {}", hex.len(), 2 * KEY_LEN));
        }
        let mut key = [0u8; KEY_LEN];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|e| format!("key line: {e}"))?;
        }
        let mut zookeeper = BTreeSet::new();
        for line in lines {
            let id = line
                .strip_prefix("zookeeper ")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("unreadable line {line:?}"))?;
            zookeeper.insert(id as i64);
        }
        Ok(SessionSecret { key, zookeeper })
    }

    /// Reads the secret in `dir`, making and durably writing a new one if there is none.
    pub fn load_or_create(vfs: &dyn Vfs, dir: &Path) -> io::Result<SessionSecret> {
        let path = dir.join(SECRET_FILE);
        if vfs.exists(&path) {
            let bytes = corral_engine::io::read_small_file(vfs, &path, 1 << 20)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
            return SessionSecret::decode(&text).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            });
        }
        let secret = SessionSecret::generate();
        secret.store(vfs, dir)?;
        Ok(secret)
    }

    /// Writes the secret into `dir` durably: temporary file, fsync, rename, directory fsync.
    pub fn store(&self, vfs: &dyn Vfs, dir: &Path) -> io::Result<()> {
        corral_engine::io::write_file_atomic(vfs, dir, SECRET_FILE, self.encode().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_depend_on_the_key_and_not_zookeepers_formula() {
        let a = SessionSecret::from_key([1; 32]);
        let b = SessionSecret::from_key([2; 32]);
        let id = 0x0100_003f_21c7_0000;
        assert_ne!(a.password(id), b.password(id));
        assert_ne!(a.password(id), session_password(id));
        assert_ne!(a.password(id), a.password(id + 1));
        assert!(a.verify(id, &a.password(id)));
        assert!(!a.verify(id, &session_password(id)));
        assert!(!a.verify(id, &a.password(id)[..15]));
    }

    #[test]
    fn imported_sessions_keep_zookeepers_password() {
        let mut s = SessionSecret::from_key([7; 32]);
        s.keep_zookeeper_passwords([5, -3]);
        assert_eq!(s.password(5), session_password(5));
        assert_eq!(s.password(-3), session_password(-3));
        assert_ne!(s.password(6), session_password(6));
    }

    #[test]
    fn file_round_trips_and_rejects_garbage() {
        let mut s = SessionSecret::generate();
        s.keep_zookeeper_passwords([0x0100_003f_21c7_0000, -1]);
        assert_eq!(SessionSecret::decode(&s.encode()).unwrap(), s);
        assert!(SessionSecret::decode("").is_err());
        assert!(SessionSecret::decode("corral-session-secret 1\nabc\n").is_err());
        let mut bad = s.encode();
        bad.push_str("nonsense\n");
        assert!(SessionSecret::decode(&bad).is_err());
        assert_ne!(SessionSecret::generate(), SessionSecret::generate());
    }

    #[test]
    fn load_or_create_keeps_the_first_secret() {
        let dir = tempfile::tempdir().unwrap();
        let vfs = corral_engine::io::SyncVfs::new();
        let first = SessionSecret::load_or_create(&vfs, dir.path()).unwrap();
        let again = SessionSecret::load_or_create(&vfs, dir.path()).unwrap();
        assert_eq!(first, again);
    }
}
