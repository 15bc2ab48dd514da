//! Serialisation hooks: what any snapshot format needs from a tree (every node in depth-first
//! pre-order with its path, data, ACL id and StatPersisted; the ACL cache), and a builder that
//! reconstructs a tree from such a stream, re-deriving everything that is not stored (child
//! counts, ephemeral/container/TTL indexes, quota prefixes and stats, digest, data size).

use thiserror::Error;

use crate::proto::{Acl, Data, JuteError, StatPersisted};

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
    #[error("i/o error writing snapshot: {0}")]
    Io(#[from] std::io::Error),
}

/// One node as snapshots store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord<'a> {
    /// The full path; the root is "/".
    pub path: &'a str,
    pub data: Data,
    pub acl: i64,
    pub stat: &'a StatPersisted,
}

impl DataTree {
    /// Every node, parents before children, as snapshot records: in the tree's key order
    /// (parent path, then name), which puts every parent before its children as ZooKeeper's
    /// format requires, and lets [`TreeBuilder`] load the nodes without sorting them.
    pub fn snapshot_nodes(&self) -> impl Iterator<Item = NodeRecord<'_>> + '_ {
        self.nodes.iter().map(|r| {
            let n: &Node = &r.0;
            NodeRecord { path: n.path(), data: n.data(), acl: n.acl, stat: &n.stat }
        })
    }

    /// The ACL cache entries (id, list), by id.
    pub fn snapshot_acls(&self) -> impl Iterator<Item = (i64, &[Acl])> + '_ {
        self.acls.iter()
    }
}

/// Rebuilds a tree from snapshot records: ACL lists first, then nodes (in any order; ZooKeeper
/// writes every parent before its children). Nodes are collected and the tree is built in one
/// pass in key order at [`TreeBuilder::finish`], which is several times faster than inserting
/// them one by one into the persistent map.
#[derive(Debug)]
pub struct TreeBuilder {
    tree: DataTree,
    pending: Vec<Node>,
}

impl TreeBuilder {
    pub fn new(options: TreeOptions) -> Self {
        TreeBuilder { tree: DataTree::empty(options), pending: Vec::new() }
    }

    /// Add an ACL list under its id.
    pub fn add_acl(&mut self, id: i64, acl: Vec<Acl>) {
        self.tree.acls.insert_loaded(id, acl);
    }

    /// Add a node; "" and "/" are the root.
    pub fn add_node(
        &mut self,
        path: &str,
        data: Data,
        acl: i64,
        stat: StatPersisted,
    ) -> Result<(), SnapshotError> {
        let path = if path.is_empty() { "/" } else { path };
        self.tree.acls.add_usage(acl);
        self.pending.push(Node::new(path, stat, &data, acl));
        Ok(())
    }

    /// Orders the collected nodes (unless they already are: Corral writes its snapshots in key
    /// order), checks for duplicates and missing parents, counts children, and inserts them in
    /// key order.
    fn build_nodes(&mut self) -> Result<(), SnapshotError> {
        use std::cmp::Ordering::Less;
        let mut nodes = std::mem::take(&mut self.pending);
        let cmp = |a: &Node, b: &Node| super::path::cmp_paths(a.path_bytes(), b.path_bytes());
        if !nodes.windows(2).all(|w| cmp(&w[0], &w[1]) == Less) {
            nodes.sort_unstable_by(cmp);
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
                && super::path::parent_of(nodes[j].path()) == parent
                && nodes[j].path() != "/"
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
        for (n, c) in nodes.into_iter().zip(children) {
            let mut n = n;
            n.num_children = c;
            self.tree.insert_node(n);
        }
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
        let limits: Vec<String> = self
            .tree
            .iter_preorder()
            .filter(|(p, n)| {
                p.starts_with(quota::QUOTA_ROOT)
                    && n.num_children == 0
                    && p.ends_with(&limit_suffix)
            })
            .map(|(p, _)| p.to_owned())
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
