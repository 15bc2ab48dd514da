//! ACLs: the reference-counted ACL cache (each distinct list stored once, nodes refer to it by
//! id; ids from 1, -1 = OPEN_ACL_UNSAFE implicitly), permission checks, and the fix-up of
//! requested ACLs (dedup, `auth` expansion, scheme validation) done before a create or setACL.
//!
//! Pure data: no clocks, sockets or files. Authentication itself (turning an AuthPacket into ids)
//! belongs to the session layer; [`digest_id`] is here because ACL ids are built from it.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use imbl::{HashMap, OrdMap};
use sha1::{Digest as _, Sha1};

use crate::proto::{Acl, ErrorCode, Id};

/// The id ZooKeeper uses for OPEN_ACL_UNSAFE without storing it.
pub const OPEN_ACL_UNSAFE_ID: i64 = -1;

static OPEN_ACL_UNSAFE: LazyLock<Arc<[Acl]>> = LazyLock::new(|| Acl::open_unsafe().into());

/// What a missing ACL id stands for: one entry that grants nothing.
static NO_ACCESS: LazyLock<Arc<[Acl]>> = LazyLock::new(|| {
    vec![Acl { perms: 0, id: Id { scheme: "world".into(), id: "anyone".into() } }].into()
});

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    acl: Arc<[Acl]>,
    refs: u64,
}

/// The ACL cache of a tree version. Cloning is O(1).
#[derive(Clone, Debug, Default)]
pub struct AclCache {
    by_id: OrdMap<i64, Entry>,
    by_list: HashMap<Arc<[Acl]>, i64>,
    last_id: i64,
}

/// Equal when the same lists are stored with the same reference counts, whatever their ids.
/// Ids are a server's local numbering, as in ZooKeeper: the counter restarts from the highest
/// stored id when a snapshot is loaded, so a list interned after a recovery may get a different
/// id than it got before the crash. Neither the ids nor the counter are part of the content.
impl PartialEq for AclCache {
    fn eq(&self, other: &Self) -> bool {
        self.by_id.len() == other.by_id.len()
            && self.by_id.values().all(|e| {
                other.by_list.get(&e.acl).and_then(|id| other.by_id.get(id)).map(|o| o.refs)
                    == Some(e.refs)
            })
    }
}

impl Eq for AclCache {}

impl AclCache {
    /// The id for `acl`, adding the list if it is new, and counting one more user of it.
    pub fn convert(&mut self, acl: &[Acl]) -> i64 {
        let id = match self.by_list.get(acl) {
            Some(id) => *id,
            None => {
                self.last_id += 1;
                let id = self.last_id;
                let list: Arc<[Acl]> = acl.into();
                self.by_list.insert(list.clone(), id);
                self.by_id.insert(id, Entry { acl: list, refs: 0 });
                id
            }
        };
        self.add_usage(id);
        id
    }

    /// Count one more user of `id` (ignored for -1 and unknown ids, as ZooKeeper does).
    pub fn add_usage(&mut self, id: i64) {
        if let Some(e) = self.by_id.get_mut(&id) {
            e.refs += 1;
        }
    }

    /// Count one user less; the list is dropped when nobody uses it.
    pub fn remove_usage(&mut self, id: i64) {
        let Some(e) = self.by_id.get_mut(&id) else { return };
        e.refs = e.refs.saturating_sub(1);
        if e.refs == 0 {
            if let Some(e) = self.by_id.remove(&id) {
                self.by_list.remove(&e.acl);
            }
        }
    }

    /// The list for an id; -1 is OPEN_ACL_UNSAFE; an unknown id reads as an empty list (which
    /// permits everything, as a missing list does in ZooKeeper).
    pub fn get(&self, id: i64) -> Arc<[Acl]> {
        if id == OPEN_ACL_UNSAFE_ID {
            return OPEN_ACL_UNSAFE.clone();
        }
        match self.by_id.get(&id) {
            Some(e) => e.acl.clone(),
            None => {
                // Fail closed: an id with no list grants nothing to anyone but super (an empty
                // list would mean "open" to checkACL). Snapshot loading refuses such ids, so
                // this is a bug if it is ever seen.
                tracing::error!(acl_id = id, "a node refers to an ACL id that is not cached");
                NO_ACCESS.clone()
            }
        }
    }

    /// Number of stored lists.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no list is stored.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every stored (id, list), by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &[Acl])> + '_ {
        self.by_id.iter().map(|(id, e)| (*id, &e.acl[..]))
    }

    /// Add a list under a given id while loading a snapshot (usage counted later by the nodes).
    pub fn insert_loaded(&mut self, id: i64, acl: Vec<Acl>) {
        let list: Arc<[Acl]> = acl.into();
        self.by_list.insert(list.clone(), id);
        self.by_id.insert(id, Entry { acl: list, refs: 0 });
        self.last_id = self.last_id.max(id);
    }

    /// Drop lists no node uses (after loading a snapshot).
    pub fn purge_unused(&mut self) {
        let unused: Vec<i64> =
            self.by_id.iter().filter(|(_, e)| e.refs == 0).map(|(id, _)| *id).collect();
        for id in unused {
            if let Some(e) = self.by_id.remove(&id) {
                self.by_list.remove(&e.acl);
            }
        }
    }

    /// True when `id` names a stored list (or is -1).
    pub fn contains(&self, id: i64) -> bool {
        id == OPEN_ACL_UNSAFE_ID || self.by_id.contains_key(&id)
    }

    /// The reference count of an id (tests and consistency checks).
    pub fn refs(&self, id: i64) -> u64 {
        self.by_id.get(&id).map_or(0, |e| e.refs)
    }
}

/// `digest` scheme id for a user and password: `user:base64(sha1("user:password"))`.
/// ZooKeeper's `generateDigest` of an auth packet's `user:password` text: the part before the
/// first ':' (the whole text if there is none), ':', and base64(SHA1(the whole text)).
pub fn digest_of_auth(text: &str) -> String {
    let user = text.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(text.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// The digest id of a user and password (`user:base64(SHA1("user:password"))`).
pub fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// Which authentication schemes the server knows, beyond the built-in `ip` and `digest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthSchemes {
    /// `sasl` ids are valid in ACLs and authenticated.
    pub sasl: bool,
    /// `x509` ids are valid in ACLs and authenticated.
    pub x509: bool,
}

impl AuthSchemes {
    fn known(&self, scheme: &str) -> bool {
        match scheme {
            "ip" | "digest" => true,
            "sasl" => self.sasl,
            "x509" => self.x509,
            _ => false,
        }
    }

    /// Whether a scheme's ids prove who the client is (ip addresses do not), which decides
    /// what an `auth` ACL entry expands to.
    fn authenticated(&self, scheme: &str) -> bool {
        scheme != "ip" && self.known(scheme)
    }

    fn valid_id(&self, scheme: &str, id: &str) -> bool {
        match scheme {
            // Java's `id.split(":").length == 2`, where split drops trailing empty parts.
            "digest" => {
                let mut parts: Vec<&str> = id.split(':').collect();
                while parts.last() == Some(&"") {
                    parts.pop();
                }
                parts.len() == 2
            }
            "ip" => parse_ip_pattern(id).is_some(),
            _ => self.known(scheme),
        }
    }
}

/// `addr` or `addr/bits`.
fn parse_ip_pattern(pattern: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match pattern.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (pattern, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some((addr, bits))
}

fn ip_matches(client: &str, pattern: &str) -> bool {
    let (Some((net, bits)), Ok(addr)) = (parse_ip_pattern(pattern), client.parse::<IpAddr>())
    else {
        return false;
    };
    let mask_eq = |a: &[u8], b: &[u8]| {
        let full = (bits / 8) as usize;
        let rem = bits % 8;
        a[..full] == b[..full] && (rem == 0 || (a[full] ^ b[full]) & (0xffu8 << (8 - rem)) == 0)
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => mask_eq(&n.octets(), &a.octets()),
        (IpAddr::V6(n), IpAddr::V6(a)) => mask_eq(&n.octets(), &a.octets()),
        _ => false,
    }
}

/// True if any id is the superuser (scheme `super`).
pub fn is_super(auth: &[Id]) -> bool {
    auth.iter().any(|id| id.scheme == "super")
}

/// ZooKeeper's `checkACL`: may a client with `auth` ids do `perm` on a node with `acl`?
pub fn check_acl(acl: &[Acl], perm: i32, auth: &[Id], schemes: &AuthSchemes) -> bool {
    if acl.is_empty() || is_super(auth) {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return true;
        }
        if !schemes.known(&a.id.scheme) {
            return false;
        }
        auth.iter().filter(|c| c.scheme == a.id.scheme).any(|c| {
            if c.scheme == "ip" {
                ip_matches(&c.id, &a.id.id)
            } else if c.scheme == "sasl" {
                // ZooKeeper's SASL provider: the SASL user named "super" matches every sasl
                // entry.
                c.id == a.id.id || c.id == "super"
            } else {
                c.id == a.id.id
            }
        })
    })
}

/// ZooKeeper's `fixupACL`: drop duplicates, expand `auth` entries to the client's
/// authenticated ids, and refuse empty lists and unknown schemes or malformed ids (INVALIDACL).
pub fn fixup_acl(acl: &[Acl], auth: &[Id], schemes: &AuthSchemes) -> Result<Vec<Acl>, ErrorCode> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    // `auth` entries expand to one entry per authenticated id, with the union of their
    // permissions (ZooKeeper writes one per auth entry *and* id; checkACL reads both lists
    // alike). So the list, and the txn that carries it, grows with the ids, not with their
    // product with the entries: a client cannot multiply a long id by a long ACL.
    let auth_perms = unique.iter().filter(|a| a.id.scheme == "auth").fold(0, |p, a| p | a.perms);
    let mut auth_expanded = false;
    for a in unique {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == "auth" {
            if auth_expanded {
                continue;
            }
            auth_expanded = true;
            let mut any = false;
            for c in auth.iter().filter(|c| schemes.authenticated(&c.scheme)) {
                any = true;
                out.push(Acl { perms: auth_perms, id: c.clone() });
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else if schemes.valid_id(&a.id.scheme, &a.id.id) {
            out.push(a.clone());
        } else {
            return Err(ErrorCode::InvalidAcl);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::perms;

    #[test]
    fn digest_matches_kazoo_harness() {
        // kazoo's test harness: super:test.
        assert_eq!(digest_id("super", "test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn cache_counts_references() {
        let mut c = AclCache::default();
        let a = Acl::read_unsafe();
        let id = c.convert(&a);
        assert_eq!(id, 1);
        assert_eq!(c.convert(&a), 1);
        assert_eq!(c.refs(1), 2);
        assert_eq!(c.convert(&Acl::open_unsafe()), 2);
        c.remove_usage(1);
        assert!(c.contains(1));
        c.remove_usage(1);
        assert!(!c.contains(1));
        // Ids are never reused.
        assert_eq!(c.convert(&a), 3);
        assert_eq!(&c.get(-1)[..], &Acl::open_unsafe()[..]);
    }

    #[test]
    fn caches_compare_by_content_not_by_id() {
        // Before a crash: list A got id 1, was dropped, then B got id 2. After recovery from a
        // snapshot taken while A was gone, the counter restarts at 0 and B gets id 1.
        let (a, b) = (Acl::read_unsafe(), Acl::open_unsafe());
        let mut before = AclCache::default();
        before.convert(&a);
        before.remove_usage(1);
        assert_eq!(before.convert(&b), 2);
        let mut after = AclCache::default();
        assert_eq!(after.convert(&b), 1);
        assert_eq!(before, after);
        // Different counts, or different lists, are different content.
        after.convert(&b);
        assert_ne!(before, after);
        before.convert(&b);
        assert_eq!(before, after);
        before.convert(&a);
        after.convert(&[Acl::new(perms::READ, "ip", "10.0.0.1")]);
        assert_ne!(before, after);
    }

    #[test]
    fn acl_checks() {
        let schemes = AuthSchemes::default();
        let digest = Id::new("digest", &digest_id("u", "p"));
        let acl = vec![
            Acl { perms: perms::READ, id: digest.clone() },
            Acl::new(perms::WRITE, "ip", "10.0.0.0/8"),
        ];
        assert!(check_acl(&acl, perms::READ, std::slice::from_ref(&digest), &schemes));
        assert!(!check_acl(&acl, perms::WRITE, std::slice::from_ref(&digest), &schemes));
        assert!(check_acl(&acl, perms::WRITE, &[Id::new("ip", "10.1.2.3")], &schemes));
        assert!(!check_acl(&acl, perms::WRITE, &[Id::new("ip", "11.1.2.3")], &schemes));
        assert!(check_acl(&acl, perms::ADMIN, &[Id::new("super", "")], &schemes));
        assert!(check_acl(&[], perms::ADMIN, &[], &schemes));
        assert!(check_acl(&Acl::open_unsafe(), perms::ADMIN, &[], &schemes));
    }

    #[test]
    fn fixup() {
        let schemes = AuthSchemes::default();
        let ip = Id::new("ip", "127.0.0.1");
        let dg = Id::new("digest", "u:h");
        assert_eq!(fixup_acl(&[], &[], &schemes), Err(ErrorCode::InvalidAcl));
        let dup = [Acl::open_unsafe(), Acl::open_unsafe()].concat();
        assert_eq!(fixup_acl(&dup, &[], &schemes).unwrap(), Acl::open_unsafe());
        assert_eq!(
            fixup_acl(&Acl::creator_all(), std::slice::from_ref(&ip), &schemes),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&Acl::creator_all(), &[ip, dg.clone()], &schemes).unwrap(),
            vec![Acl { perms: perms::ALL, id: dg.clone() }]
        );
        assert_eq!(
            fixup_acl(&[Acl::new(1, "world", "x")], &[], &schemes),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[Acl::new(1, "digest", "u:")], &[], &schemes),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[Acl::new(1, "ip", "1.2.3.4/33")], &[], &schemes),
            Err(ErrorCode::InvalidAcl)
        );
        assert!(fixup_acl(&[Acl::new(1, "ip", "::1/64")], &[], &schemes).is_ok());
        // Many `auth` entries make one entry per authenticated id, perms united.
        let dg2 = Id::new("digest", "v:h");
        let many: Vec<Acl> = (1..=31).map(|p| Acl::new(p, "auth", "")).collect();
        assert_eq!(
            fixup_acl(&many, &[Id::new("ip", "127.0.0.1"), dg.clone(), dg2.clone()], &schemes)
                .unwrap(),
            vec![Acl { perms: 31, id: dg.clone() }, Acl { perms: 31, id: dg2 }]
        );
        assert_eq!(
            fixup_acl(&[Acl::new(1, "sasl", "x")], &[], &schemes),
            Err(ErrorCode::InvalidAcl)
        );
    }
}
