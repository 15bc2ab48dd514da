//! Quotas as ZooKeeper keeps them: ordinary znodes under `/zookeeper/quota/<path>/` named
//! `zookeeper_limits` (set by clients) and `zookeeper_stats` (rewritten by the tree as nodes
//! under `<path>` are created, deleted and changed), whose data is a StatsTrack string such as
//! `count=4,bytes=50` or `count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=5`.

use std::collections::BTreeMap;

/// The quota root.
pub const QUOTA_ROOT: &str = "/zookeeper/quota";
/// Name of a limits node.
pub const LIMIT_NODE: &str = "zookeeper_limits";
/// Name of a stats node.
pub const STAT_NODE: &str = "zookeeper_stats";

/// Path of the limits node for a quota prefix.
pub fn limit_path(prefix: &str) -> String {
    format!("{QUOTA_ROOT}{prefix}/{LIMIT_NODE}")
}

/// Path of the stats node for a quota prefix.
pub fn stat_path(prefix: &str) -> String {
    format!("{QUOTA_ROOT}{prefix}/{STAT_NODE}")
}

/// The quota prefix a node directly under a /zookeeper/quota subtree belongs to:
/// ZooKeeper's `trimQuotaPath` (the parent path with /zookeeper/quota cut off).
pub fn trim_quota_path(parent: &str) -> &str {
    parent.strip_prefix(QUOTA_ROOT).unwrap_or(parent)
}

/// A parsed StatsTrack: `key=value` pairs; missing keys read as -1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsTrack {
    values: BTreeMap<String, i64>,
}

impl StatsTrack {
    /// Parse ZooKeeper's format (pairs separated by runs of ',' or ';'). `None` where Java
    /// would throw while parsing.
    pub fn parse(data: &[u8]) -> Option<StatsTrack> {
        let text = String::from_utf8_lossy(data);
        let mut values = BTreeMap::new();
        if text.is_empty() {
            return Some(StatsTrack { values });
        }
        // Java's Pattern.split drops trailing empty strings but keeps a leading one.
        let mut pairs: Vec<&str> = text.split([',', ';']).collect();
        let leading_empty = pairs.first() == Some(&"");
        pairs.retain(|p| !p.is_empty());
        if leading_empty {
            return None;
        }
        for pair in pairs {
            let mut kv: Vec<&str> = pair.split('=').collect();
            while kv.last() == Some(&"") {
                kv.pop();
            }
            if kv.len() < 2 {
                return None;
            }
            let value = if kv[1].is_empty() { -1 } else { kv[1].parse::<i64>().ok()? };
            values.insert(kv[0].to_owned(), value);
        }
        Some(StatsTrack { values })
    }

    fn get(&self, key: &str) -> i64 {
        self.values.get(key).copied().unwrap_or(-1)
    }

    pub fn count(&self) -> i64 {
        self.get("count")
    }

    pub fn bytes(&self) -> i64 {
        self.get("bytes")
    }

    pub fn count_hard_limit(&self) -> i64 {
        self.get("countHardLimit")
    }

    pub fn byte_hard_limit(&self) -> i64 {
        self.get("byteHardLimit")
    }

    pub fn set_count(&mut self, v: i64) {
        self.values.insert("count".into(), v);
    }

    pub fn set_bytes(&mut self, v: i64) {
        self.values.insert("bytes".into(), v);
    }

    /// ZooKeeper's `toString`: count and bytes first, then other keys sorted after a '=' and ';'
    /// separators so that 3.4 parsers still read the first two.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("count={},bytes={}", self.count(), self.bytes());
        let rest: Vec<_> =
            self.values.iter().filter(|(k, _)| *k != "count" && *k != "bytes").collect();
        if !rest.is_empty() {
            s.push('=');
            for (k, v) in rest {
                s.push_str(&format!(";{k}={v}"));
            }
        }
        s.into_bytes()
    }
}

/// Whether a write to `path` with `data` must be refused because it would put a malformed
/// limits/stats node into the quota tree (ZooKeeper's `validateQuotaData`).
pub fn invalid_quota_write(path: &str, data: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(QUOTA_ROOT) else { return false };
    if !rest.starts_with('/') {
        return false;
    }
    let (parent, name) = super::path::split(path);
    if name != LIMIT_NODE && name != STAT_NODE {
        return false;
    }
    trim_quota_path(parent).is_empty() || StatsTrack::parse(data).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let s = StatsTrack::parse(b"count=4,bytes=5").unwrap();
        assert_eq!((s.count(), s.bytes(), s.count_hard_limit()), (4, 5, -1));
        assert_eq!(s.to_bytes(), b"count=4,bytes=5");
        let s = StatsTrack::parse(b"count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=5").unwrap();
        assert_eq!((s.count_hard_limit(), s.byte_hard_limit()), (5, 10));
        assert_eq!(s.to_bytes(), b"count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=5");
        assert_eq!(StatsTrack::parse(b"").unwrap().to_bytes(), b"count=-1,bytes=-1");
        assert!(StatsTrack::parse(b"count=").is_none());
        assert!(StatsTrack::parse(b"count=x").is_none());
        assert!(StatsTrack::parse(b",count=1").is_none());
        assert!(StatsTrack::parse(b"count=1,,bytes=2;").is_some());
    }

    #[test]
    fn quota_write_validation() {
        assert!(invalid_quota_write("/zookeeper/quota/zookeeper_limits", b"count=1"));
        assert!(invalid_quota_write("/zookeeper/quota/a/zookeeper_limits", b"nonsense"));
        assert!(!invalid_quota_write("/zookeeper/quota/a/zookeeper_limits", b"count=1,bytes=-1"));
        assert!(!invalid_quota_write("/zookeeper/quota/a", b"nonsense"));
        assert!(!invalid_quota_write("/a/zookeeper_limits", b"nonsense"));
    }
}
