//! Serialisation hooks: what any snapshot format needs from a tree (every node in depth-first
//! pre-order with its path, data, ACL id and StatPersisted; the ACL cache), and a builder that
//! reconstructs a tree from such a stream, re-deriving everything that is not stored (child
//! counts, ephemeral/container/TTL indexes, quota prefixes and stats, digest, data size).

use thiserror::Error;

use crate::proto::{Acl, Data, JuteError, StatPersisted};

use super::path::split;
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
    /// Every node, parents before children, as snapshot records.
    pub fn snapshot_nodes(&self) -> impl Iterator<Item = NodeRecord<'_>> + '_ {
        self.iter_preorder().map(|(path, n): (&str, &Node)| NodeRecord {
            path,
            data: n.data(),
            acl: n.acl,
            stat: &n.stat,
        })
    }

    /// The ACL cache entries (id, list), by id.
    pub fn snapshot_acls(&self) -> impl Iterator<Item = (i64, &[Acl])> + '_ {
        self.acls.iter()
    }
}

/// Rebuilds a tree from snapshot records: ACL lists first, then nodes with every parent before
/// its children.
#[derive(Debug)]
pub struct TreeBuilder {
    tree: DataTree,
}

impl TreeBuilder {
    pub fn new(options: TreeOptions) -> Self {
        TreeBuilder { tree: DataTree::empty(options) }
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
        if self.tree.exists(path) {
            return Err(SnapshotError::DuplicateNode(path.to_owned()));
        }
        if path != "/" {
            let parent = split(path).0;
            if !self.tree.update_node(parent, |p| p.num_children += 1) {
                return Err(SnapshotError::MissingParent(path.to_owned()));
            }
        }
        self.tree.acls.add_usage(acl);
        self.tree.insert_node(Node::new(path, stat, &data, acl));
        Ok(())
    }

    /// The finished tree: quota prefixes found and their stats recounted (as ZooKeeper does on
    /// load), unused ACL lists dropped.
    pub fn finish(mut self, last_processed_zxid: i64) -> Result<DataTree, SnapshotError> {
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
