//! Serialisation hooks: what any snapshot format needs from a tree (every node in depth-first
//! pre-order with its path, data, ACL id and StatPersisted; the ACL cache), and a builder that
//! reconstructs a tree from such a stream, re-deriving everything that is not stored (child
//! counts, ephemeral/container/TTL indexes, quota prefixes and stats, digest, data size).

use std::cmp::Ordering::Less;

use thiserror::Error;

use crate::proto::{Acl, JuteError, StatPersisted};

use super::quota;
use super::{DataTree, Node, TreeOptions};

/// Why a snapshot could not be read or a tree could not be rebuilt.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("snapshot record is malformed: {0}")]
    Jute(#[from] JuteError),
    #[error("bad snapshot magic {0:#x}")]
    BadMagic(i32),
    #[error("unsupported snapshot version {0}")]
    BadVersion(i32),
    #[error("checksum mismatch at offset {offset}: stored {stored:#x}, computed {computed:#x}")]
    BadChecksum { offset: usize, stored: i64, computed: i64 },
    #[error("expected the '/' marker at offset {offset}")]
    MissingMarker { offset: usize },
    #[error("node {0} comes before its parent")]
    MissingParent(String),
    #[error("node {0} appears twice")]
    DuplicateNode(String),
    #[error("snapshot has no root node")]
    MissingRoot,
    #[error("ACL id {0} is out of range (ids must fit an i32)")]
    AclIdRange(i64),
    /// A node refers to an ACL id the snapshot's ACL cache does not hold.
    #[error("node {path} refers to ACL id {id}, which the snapshot does not hold")]
    UnknownAcl {
        /// The node.
        path: String,
        /// The id.
        id: i64,
    },
    #[error("i/o error writing snapshot: {0}")]
    Io(#[from] std::io::Error),
}

/// Nodes keep ACL ids as i32 (ZooKeeper numbers lists from 1 and uses -1 for the open ACL; a
/// file naming an id beyond i32 is refused rather than truncated).
fn check_acl_id(id: i64) -> Result<(), SnapshotError> {
    i32::try_from(id).map(|_| ()).map_err(|_| SnapshotError::AclIdRange(id))
}

/// One node as snapshots store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord<'a> {
    /// The full path; the root is "/".
    pub path: &'a str,
    /// `None` is null data.
    pub data: Option<&'a [u8]>,
    pub acl: i64,
    pub stat: &'a StatPersisted,
}

impl DataTree {
    /// Every node, parents before children, as snapshot records: in the tree's key order
    /// (parent path, then name), which puts every parent before its children as ZooKeeper's
    /// format requires, and lets [`TreeBuilder`] load the nodes without sorting them.
    pub fn snapshot_nodes(&self) -> impl Iterator<Item = NodeRecord<'_>> + '_ {
        self.nodes.iter().map(|n| NodeRecord {
            path: n.path(),
            data: n.data_bytes(),
            acl: n.acl(),
            stat: &n.stat,
        })
    }

    /// The ACL cache entries (id, list), by id.
    pub fn snapshot_acls(&self) -> impl Iterator<Item = (i64, &[Acl])> + '_ {
        self.acls.iter()
    }
}

/// Rebuilds a tree from snapshot records: ACL lists first, then nodes.
///
/// Corral writes nodes in the map's key order (parent path, then name). Such nodes go straight
/// into the tree as they arrive, and since the children of one parent are then consecutive, child
/// counts are kept per run of siblings (one entry per parent, not per node) and set at
/// [`TreeBuilder::finish`]. Nodes in any other order (ZooKeeper writes depth-first pre-order) are
/// collected instead, sorted, counted and inserted at `finish`. Either way nothing is held twice
/// for long: loading a large snapshot is dominated by allocating the tree itself.
#[derive(Debug)]
pub struct TreeBuilder {
    tree: DataTree,
    /// Every node added, in input order (into the tree at `finish`).
    nodes: Vec<Node>,
    /// The input has been in key order so far (it is, for Corral's own snapshots).
    sorted: bool,
    /// Quota limit nodes seen (their counts are set at `finish`).
    limits: Vec<String>,
}

impl TreeBuilder {
    pub fn new(options: TreeOptions) -> Self {
        TreeBuilder {
            tree: DataTree::empty(options),
            nodes: Vec::new(),
            sorted: true,
            limits: Vec::new(),
        }
    }

    /// Add an ACL list under its id.
    pub fn add_acl(&mut self, id: i64, acl: Vec<Acl>) -> Result<(), SnapshotError> {
        check_acl_id(id)?;
        self.tree.acls.insert_loaded(id, acl);
        Ok(())
    }

    /// Add a node; "" and "/" are the root. `data` `None` is null data.
    pub fn add_node(
        &mut self,
        path: &str,
        data: Option<&[u8]>,
        acl: i64,
        stat: StatPersisted,
    ) -> Result<(), SnapshotError> {
        let path = if path.is_empty() { "/" } else { path };
        check_acl_id(acl)?;
        if !self.tree.acls.contains(acl) {
            return Err(SnapshotError::UnknownAcl { path: path.to_owned(), id: acl });
        }
        self.tree.acls.add_usage(acl);
        if path.starts_with(quota::QUOTA_ROOT) && path.ends_with(quota::LIMIT_NODE) {
            self.limits.push(path.to_owned());
        }
        let node = Node::from_parts(path, stat, data, acl);
        if let Some(last) = self.nodes.last() {
            self.sorted &= super::path::cmp_paths(last.path_bytes(), node.path_bytes()) == Less;
        }
        self.nodes.push(node);
        Ok(())
    }

    /// Puts the nodes into the tree with their child counts: sorted into key order unless
    /// they came that way (checking for duplicates), children counted per run of siblings.
    fn build_nodes(&mut self) -> Result<(), SnapshotError> {
        let mut nodes = std::mem::take(&mut self.nodes);
        if !self.sorted {
            nodes.sort_unstable_by(|a, b| super::path::cmp_paths(a.path_bytes(), b.path_bytes()));
            if let Some(w) = nodes.windows(2).find(|w| w[0].path_bytes() == w[1].path_bytes()) {
                return Err(SnapshotError::DuplicateNode(w[0].path().to_owned()));
            }
        }
        // In key order the children of one parent are consecutive: count each run and find
        // its parent by binary search (one search per parent, not per node).
        let mut children = vec![0u32; nodes.len()];
        let mut i = 0;
        while i < nodes.len() {
            let p = nodes[i].path();
            if p == "/" {
                i += 1;
                continue;
            }
            let parent = super::path::parent_of(p);
            let mut j = i + 1;
            while j < nodes.len()
                && nodes[j].path() != "/"
                && super::path::parent_of(nodes[j].path()) == parent
            {
                j += 1;
            }
            match nodes
                .binary_search_by(|n| super::path::cmp_paths(n.path_bytes(), parent.as_bytes()))
            {
                Ok(k) => children[k] += (j - i) as u32,
                Err(_) => return Err(SnapshotError::MissingParent(p.to_owned())),
            }
            i = j;
        }
        // The builder holds the only reference to each node, so counts are set in place.
        for (n, c) in nodes.iter_mut().zip(children) {
            let set = c == 0 || n.set_num_children_if_unique(c);
            assert!(set, "a node being loaded is shared");
        }
        // In key order and unique, so the map is built bottom-up from them, its leaves full.
        assert!(self.tree.nodes.is_empty(), "the builder's tree starts empty");
        for n in &nodes {
            self.tree.account_node(n);
        }
        self.tree.nodes = super::pset::PSet::from_sorted(nodes);
        Ok(())
    }

    /// The finished tree: quota prefixes found and their stats recounted (as ZooKeeper does on
    /// load), unused ACL lists dropped.
    pub fn finish(mut self, last_processed_zxid: i64) -> Result<DataTree, SnapshotError> {
        self.build_nodes()?;
        if !self.tree.exists("/") {
            return Err(SnapshotError::MissingRoot);
        }
        let limit_suffix = format!("/{}", quota::LIMIT_NODE);
        let limits: Vec<String> = std::mem::take(&mut self.limits)
            .into_iter()
            .filter(|p| {
                p.ends_with(&limit_suffix) && self.tree.node(p).is_some_and(|n| n.num_children == 0)
            })
            .collect();
        for limit in limits {
            let real = &limit[quota::QUOTA_ROOT.len()..limit.len() - limit_suffix.len()];
            if !real.is_empty() {
                self.tree.update_quota_for_path(real);
                self.tree.quotas.insert(real.to_owned());
            }
        }
        self.tree.acls.purge_unused();
        self.tree.last_processed_zxid = last_processed_zxid;
        Ok(self.tree)
    }
}

#[cfg(test)]
mod tests {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    use super::*;
    use crate::tree::CONTAINER_EPHEMERAL_OWNER;

    /// Records of a small tree with siblings whose names sort around '/' ("a", "a-b", "a0").
    fn records() -> Vec<(String, Option<Vec<u8>>, i64, StatPersisted)> {
        let paths =
            ["/", "/a", "/a-b", "/a0", "/b", "/a/x", "/a/y", "/a-b/z", "/a/x/1", "/a/x/2", "/b/e"];
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let stat = StatPersisted {
                    czxid: i as i64,
                    mzxid: i as i64,
                    // One ephemeral and one container, to check the indexes are rebuilt.
                    ephemeral_owner: match *p {
                        "/b/e" => 0x55,
                        "/a-b" => CONTAINER_EPHEMERAL_OWNER,
                        _ => 0,
                    },
                    ..StatPersisted::default()
                };
                let data = (i % 3 != 0).then(|| format!("d{i}").into_bytes());
                (p.to_string(), data, if i % 2 == 0 { 1 } else { -1 }, stat)
            })
            .collect()
    }

    fn build(
        recs: &[(String, Option<Vec<u8>>, i64, StatPersisted)],
    ) -> Result<DataTree, SnapshotError> {
        let mut b = TreeBuilder::new(TreeOptions::default());
        b.add_acl(1, Acl::read_unsafe()).unwrap();
        for (p, d, acl, stat) in recs {
            b.add_node(p, d.as_deref(), *acl, stat.clone())?;
        }
        b.finish(99)
    }

    #[test]
    fn acl_ids_beyond_i32_are_refused() {
        let mut b = TreeBuilder::new(TreeOptions::default());
        assert!(matches!(
            b.add_acl(1 << 40, Acl::read_unsafe()),
            Err(SnapshotError::AclIdRange(id)) if id == 1 << 40
        ));
        let stat = StatPersisted::default();
        assert!(matches!(
            b.add_node("", Some(b""), i64::from(i32::MIN) - 1, stat.clone()),
            Err(SnapshotError::AclIdRange(_))
        ));
        b.add_acl(i64::from(i32::MAX), Acl::read_unsafe()).unwrap();
        b.add_node("", Some(b""), i64::from(i32::MAX), stat).unwrap();
        let tree = b.finish(1).unwrap();
        assert_eq!(tree.node("/").unwrap().acl(), i64::from(i32::MAX));
    }

    #[test]
    fn key_order_and_any_other_order_build_the_same_tree() {
        let mut sorted = records();
        sorted.sort_by(|a, b| super::super::path::cmp_paths(a.0.as_bytes(), b.0.as_bytes()));
        let tree = build(&sorted).unwrap();
        assert_eq!(tree.node_count(), 12, "11 nodes, the root counted twice as ZooKeeper does");
        let children = |p: &str| tree.node(p).unwrap().num_children;
        assert_eq!(
            ["/", "/a", "/a-b", "/a0", "/b", "/a/x", "/a/x/1"].map(children),
            [4, 2, 1, 0, 1, 2, 0]
        );
        assert_eq!(tree.ephemerals(0x55), vec!["/b/e".to_string()]);
        assert_eq!(tree.containers(), vec!["/a-b".to_string()]);
        // Written back in key order, it reads the same.
        let again: Vec<_> = tree
            .snapshot_nodes()
            .map(|r| (r.path.to_owned(), r.data.map(<[u8]>::to_vec), r.acl, r.stat.clone()))
            .collect();
        assert_eq!(build(&again).unwrap(), tree);
        // Depth-first pre-order (ZooKeeper's), reversed after the root, and shuffled: the input
        // leaves key order after some nodes went in directly, or at once.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut preorder = records();
        preorder.sort_by(|a, b| a.0.cmp(&b.0));
        let mut reversed = sorted.clone();
        reversed[1..].reverse();
        for input in [preorder, reversed] {
            assert_eq!(build(&input).unwrap(), tree);
        }
        for _ in 0..20 {
            let mut shuffled = sorted.clone();
            shuffled[1..].shuffle(&mut rng);
            assert_eq!(build(&shuffled).unwrap(), tree);
        }
    }

    #[test]
    fn missing_parents_and_duplicates_are_errors_in_either_order() {
        let mut sorted = records();
        sorted.sort_by(|a, b| super::super::path::cmp_paths(a.0.as_bytes(), b.0.as_bytes()));
        // In key order, and out of it.
        let without_a: Vec<_> = sorted.iter().filter(|r| r.0 != "/a").cloned().collect();
        let mut shuffled_without_a = without_a.clone();
        shuffled_without_a.reverse();
        for input in [without_a, shuffled_without_a] {
            match build(&input) {
                Err(SnapshotError::MissingParent(p)) => assert!(p.starts_with("/a/"), "{p}"),
                other => panic!("expected a missing parent, got {other:?}"),
            }
        }
        let mut twice = sorted.clone();
        twice.push(sorted[5].clone());
        assert!(matches!(build(&twice), Err(SnapshotError::DuplicateNode(_))));
        let mut adjacent = sorted.clone();
        adjacent.insert(3, sorted[3].clone());
        assert!(matches!(build(&adjacent), Err(SnapshotError::DuplicateNode(_))));
        // No root at all.
        let no_root: Vec<_> = sorted[1..].to_vec();
        assert!(build(&no_root).is_err());
    }
}
