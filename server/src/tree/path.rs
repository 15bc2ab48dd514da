//! Znode paths: ZooKeeper's validation rules (reference §6, `PathUtils.validatePath`), the
//! parent/child split, and the key order of the node map.
//!
//! The node map orders paths by (parent path, child name). All children of a node are then one
//! contiguous range of the map, so the tree needs no child lists of its own.

use std::cmp::Ordering;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};

/// Why a path is invalid (all map to BADARGUMENTS on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    #[error("path must not be empty")]
    Empty,
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("path must not end with '/'")]
    TrailingSlash,
    #[error("empty node name")]
    EmptyName,
    #[error("relative paths ('.' or '..') are not allowed")]
    Relative,
    #[error("invalid character in path")]
    InvalidChar,
}

/// Check a path by ZooKeeper's rules.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(PathError::TrailingSlash);
    }
    for name in path[1..].split('/') {
        match name {
            "" => return Err(PathError::EmptyName),
            "." | ".." => return Err(PathError::Relative),
            _ => {}
        }
    }
    if path.chars().any(invalid_char) {
        return Err(PathError::InvalidChar);
    }
    Ok(())
}

/// Java checks UTF-16 units: U+D800..U+F8FF includes the surrogates, so every character
/// outside the Basic Multilingual Plane (a surrogate pair in Java) is refused too.
fn invalid_char(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{e000}'..='\u{f8ff}' | '\u{fff0}'..)
}

/// Split at the last '/': `("/a", "b")` for "/a/b", `("", "a")` for "/a", `("", "")` for "/".
/// A path without '/' is all name.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The parent of a non-root path in ZooKeeper's spelling, mapping the root's alias "" to "/".
pub fn parent_of(path: &str) -> &str {
    match split(path).0 {
        "" => "/",
        p => p,
    }
}

/// The map key of a node: its full path, shared with the indexes that refer to the node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PathKey(pub Arc<str>);

impl PathKey {
    pub fn new(path: &str) -> Self {
        PathKey(Arc::from(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The (parent, name) form of a path used for ordering; the root "/" is ("", "").
pub(crate) fn parts(path: &[u8]) -> (&[u8], &[u8]) {
    if path == b"/" {
        return (b"", b"");
    }
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// The map order of two paths: by parent path, then by name.
///
/// The order of [`parts`], computed without splitting both paths: past their common prefix,
/// if neither rest holds a '/', the parents are equal (both end inside the common prefix) and the
/// rests are the names' differing tails; if only one rest holds a '/', that path's parent
/// extends past the other's, which is a prefix of it, so that path is greater. Only when both
/// rests hold a '/' are the parts compared. The map compares keys a few dozen times per insert
/// or lookup, so this is on every request's path and dominates loading a large snapshot.
pub(crate) fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let i = common_prefix_len(a, b);
    let (ra, rb) = (&a[i..], &b[i..]);
    let slash = |r: &[u8]| r.contains(&b'/');
    match (slash(ra), slash(rb)) {
        // The remainders differ in their first byte (or one is empty), so that byte decides:
        // no need to compare the rest.
        (false, false) => match (ra.first(), rb.first()) {
            (Some(x), Some(y)) => x.cmp(y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        },
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (true, true) => parts(a).cmp(&parts(b)),
    }
}

/// Length of the longest common prefix of `a` and `b`, eight bytes at a time.
fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_paths(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A borrowed lookup key: a path, or the bounds of one node's children.
#[derive(Clone, Copy, Debug)]
pub enum KeyQuery<'a> {
    /// Exactly this path ("" is taken as the root).
    Path(&'a str),
    /// Below every child of `parent` (and above the parent's own key).
    ChildrenStart(&'a str),
    /// Above every child of `parent`.
    ChildrenEnd(&'a str),
}

impl KeyQuery<'_> {
    /// Compare this query with a stored path.
    pub(crate) fn cmp_path(&self, key: &[u8]) -> Ordering {
        if let KeyQuery::Path(p) = *self {
            let p = if p.is_empty() { "/" } else { p };
            return cmp_paths(p.as_bytes(), key);
        }
        let (kp, kn) = parts(key);
        match *self {
            KeyQuery::Path(_) => unreachable!("handled above"),
            // Children of "/" have parent part "", and of "/a" parent part "/a". The root itself,
            // ("", ""), sorts before its children because its name is empty.
            KeyQuery::ChildrenStart(parent) => {
                let pp: &[u8] = if parent == "/" { b"" } else { parent.as_bytes() };
                pp.cmp(kp).then(if kn.is_empty() { Ordering::Greater } else { Ordering::Less })
            }
            KeyQuery::ChildrenEnd(parent) => {
                let pp: &[u8] = if parent == "/" { b"" } else { parent.as_bytes() };
                pp.cmp(kp).then(Ordering::Greater)
            }
        }
    }
}

impl Equivalent<PathKey> for KeyQuery<'_> {
    fn equivalent(&self, key: &PathKey) -> bool {
        self.cmp_path(key.0.as_bytes()) == Ordering::Equal
    }
}

impl Comparable<PathKey> for KeyQuery<'_> {
    fn compare(&self, key: &PathKey) -> Ordering {
        self.cmp_path(key.0.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rules() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/...", "/ü", "/a b"] {
            assert_eq!(validate_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", PathError::Empty),
            ("a", PathError::NotAbsolute),
            ("/a/", PathError::TrailingSlash),
            ("//a", PathError::EmptyName),
            ("/a//b", PathError::EmptyName),
            ("/a/.", PathError::Relative),
            ("/../a", PathError::Relative),
            ("/a\u{0}", PathError::InvalidChar),
            ("/a\u{1f}", PathError::InvalidChar),
            ("/a\u{85}", PathError::InvalidChar),
            ("/a\u{e000}", PathError::InvalidChar),
            ("/a\u{fff5}", PathError::InvalidChar),
            ("/a\u{1f600}", PathError::InvalidChar),
        ] {
            assert_eq!(validate_path(bad), Err(why), "{bad:?}");
        }
    }

    #[test]
    fn split_and_parent() {
        assert_eq!(split("/a/b"), ("/a", "b"));
        assert_eq!(split("/a"), ("", "a"));
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
    }

    proptest::proptest! {
        /// The fast comparison is exactly the (parent, name) order.
        #[test]
        fn cmp_paths_is_the_parts_order(
            a in "(/[ab.-]{1,3}){1,4}|/", b in "(/[ab.-]{1,3}){1,4}|/",
            pre in "(/[a-z0-9]{1,9}){0,3}",
        ) {
            let (a, b) = (format!("{pre}{a}"), format!("{pre}{b}"));
            let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
            let (a, b) = (if a.is_empty() { "/" } else { a }, if b.is_empty() { "/" } else { b });
            proptest::prop_assert_eq!(
                cmp_paths(a.as_bytes(), b.as_bytes()),
                parts(a.as_bytes()).cmp(&parts(b.as_bytes())),
                "{} vs {}", a, b
            );
        }
    }

    #[test]
    fn children_are_contiguous() {
        let mut keys: Vec<PathKey> =
            ["/", "/a", "/a/b", "/a/c", "/a-b", "/a/b/c", "/b", "/a/b0", "/a0"]
                .iter()
                .map(|p| PathKey::new(p))
                .collect();
        keys.sort();
        let order: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        assert_eq!(order, ["/", "/a", "/a-b", "/a0", "/b", "/a/b", "/a/b0", "/a/c", "/a/b/c"]);
        let q = KeyQuery::ChildrenStart("/a");
        assert_eq!(q.compare(&PathKey::new("/a")), Ordering::Greater);
        assert_eq!(q.compare(&PathKey::new("/a/b")), Ordering::Less);
        let q = KeyQuery::ChildrenStart("/");
        assert_eq!(q.compare(&PathKey::new("/")), Ordering::Greater);
        assert_eq!(q.compare(&PathKey::new("/a")), Ordering::Less);
        let q = KeyQuery::ChildrenEnd("/");
        assert_eq!(q.compare(&PathKey::new("/b")), Ordering::Greater);
        assert_eq!(q.compare(&PathKey::new("/a/b")), Ordering::Less);
        assert!(KeyQuery::Path("").equivalent(&PathKey::new("/")));
    }
}
