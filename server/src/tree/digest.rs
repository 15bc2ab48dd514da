//! The per-node digest of ZooKeeper 3.6+ (digest version 2, `DigestCalculator`): CRC32 over the
//! path bytes, the data, and 60 bytes of stat (czxid, mzxid, pzxid, ctime, mtime, version,
//! cversion, aversion, ephemeralOwner, big-endian). The tree digest is the wrapping sum of all
//! node digests; nodes under "/zookeeper/" count 0 and the root is hashed as "".

use crate::proto::StatPersisted;

/// The digest version this calculation implements.
pub const DIGEST_VERSION: i32 = 2;

/// The digest of one node.
pub fn node_digest(path: &str, data: Option<&[u8]>, stat: &StatPersisted) -> u32 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let mut b = [0u8; 60];
    let longs = [stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime];
    for (i, v) in longs.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
    }
    for (i, v) in [stat.version, stat.cversion, stat.aversion].iter().enumerate() {
        b[40 + i * 4..44 + i * 4].copy_from_slice(&v.to_be_bytes());
    }
    b[52..60].copy_from_slice(&stat.ephemeral_owner.to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(path.as_bytes());
    if let Some(d) = data {
        h.update(d);
    }
    h.update(&b);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_subtree_is_excluded_but_zookeeper_node_is_not() {
        let s = StatPersisted::default();
        assert_eq!(node_digest("/zookeeper/quota", Some(b""), &s), 0);
        assert_ne!(node_digest("/zookeeper", Some(b""), &s), 0);
        assert_eq!(node_digest("/", None, &s), node_digest("", Some(b""), &s));
        // CRC32 of 60 zero bytes: the digest of a fresh root.
        assert_eq!(node_digest("/", None, &s), crc32fast::hash(&[0u8; 60]));
    }
}
