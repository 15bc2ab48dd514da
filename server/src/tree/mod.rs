//! The DataTree: every znode with ZooKeeper's Stat bookkeeping, the ACL cache, the ephemeral,
//! container and TTL indexes, quota accounting and the incremental tree digest.
//!
//! A [`DataTree`] value is one version of the tree. It is built from persistent (structurally
//! shared) maps, so `clone()` is O(1): the server publishes a clone to readers and hands one to
//! the snapshotter while later txns go into the next version. Changes happen only through
//! [`DataTree::apply`], a pure function of the tree and a txn, so replicas applying the same
//! txns hold identical trees (and digests). [`prepare()`] turns a client write into such a txn.
//!
//! This module never touches sockets, clocks, files or watches: time and zxids come in with the
//! txn, and watch triggers go out in the [`ApplyOutcome`] for the watch manager to fire.

pub mod acl;
mod apply;
pub mod digest;
pub mod path;
pub mod prepare;
mod pset;
pub mod quota;
pub mod snapshot;
pub mod zk_snapshot;

#[cfg(test)]
mod model_tests;

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::proto::{Acl, Data, Stat, StatPersisted};
use acl::AclCache;
use path::{KeyQuery, PathKey};
use pset::PSet;

pub use apply::{ApplyOutcome, TxnResult, WatchTrigger};
pub use prepare::{prepare, PrepareConfig, SessionContext};

/// `ephemeralOwner` of container nodes.
pub const CONTAINER_EPHEMERAL_OWNER: i64 = i64::MIN;
/// Top byte set in the `ephemeralOwner` of extended types (TTL nodes).
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
/// Largest TTL in milliseconds (40 bits).
pub const MAX_TTL: i64 = 0xff_ffff_ffff;

/// The special paths every tree has.
pub const ZOOKEEPER_PATH: &str = "/zookeeper";
pub const QUOTA_PATH: &str = "/zookeeper/quota";
pub const CONFIG_PATH: &str = "/zookeeper/config";

/// What kind of node an `ephemeralOwner` value denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralType {
    /// Persistent (owner 0).
    Void,
    /// Owned by a session.
    Normal,
    Container,
    Ttl,
}

/// The `ephemeralOwner` of a TTL node.
pub fn ttl_ephemeral_owner(ttl: i64) -> i64 {
    EXTENDED_MASK | ttl
}

/// The fixed part of a znode: its persisted stat, ACL id and child count. 72 bytes: with the
/// reference count, the slice length, the node's digest, a length byte and a 30-byte path, a
/// znode of 100 bytes fits a 224-byte allocation (docs/performance.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHead {
    pub stat: StatPersisted,
    /// Id in the tree's ACL cache (ids stay within i32; see [`NodeHead::acl`]).
    acl: i32,
    pub num_children: u32,
}

impl NodeHead {
    /// Id of the node's ACL list in the tree's ACL cache.
    pub fn acl(&self) -> i64 {
        i64::from(self.acl)
    }

    /// Sets the ACL id. Ids come from [`AclCache`], which hands out and loads only ids that fit
    /// an i32 (ZooKeeper numbers lists from 1 and uses -1 for the open ACL).
    pub fn set_acl(&mut self, id: i64) {
        self.acl = i32::try_from(id).expect("ACL cache ids fit an i32");
    }
}

// The bytes of a node: its share of the tree digest (u32, little-endian), a length byte, the
// path and the data. The length byte's top bit marks null data; its low 7 bits are the path's
// length, or LONG_PATH, in which case a u32 (little-endian) with the length follows.

/// Where the length byte is (after the digest).
const LEN_AT: usize = 4;
/// Top bit of the length byte: the node's data is null.
const NULL_DATA: u8 = 0x80;
/// Low bits of the length byte for a path of 127 bytes or more.
const LONG_PATH: u8 = 0x7f;

/// One znode, in one shared allocation: a reference count, the [`NodeHead`], and the node's
/// digest, path and data (laid out as the comment above `LEN_AT` says). Cloning is a
/// reference-count increment. Nodes are immutable once in a tree version; a change makes a new
/// node (see `NodeEdit`). The map orders nodes by path (parent first, then name), and two
/// nodes are equal as map keys when their paths are.
///
/// One allocation rather than a header and a separate buffer saves a pointer, a second
/// reference count and a second allocator rounding per node: about 80 bytes of a 100-byte
/// znode's footprint (docs/performance.md).
#[derive(Clone)]
pub struct Node(triomphe::ThinArc<NodeHead, u8>);

impl std::ops::Deref for Node {
    type Target = NodeHead;

    fn deref(&self) -> &NodeHead {
        &self.0.header.header
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("path", &self.path())
            .field("data", &self.data())
            .field("head", &**self)
            .finish()
    }
}

impl Node {
    fn new(path: &str, stat: StatPersisted, data: &Data, acl: i64) -> Node {
        Node::from_parts(path, stat, data.as_option(), acl)
    }

    /// A node from borrowed parts (`data` `None` is null data).
    fn from_parts(path: &str, stat: StatPersisted, data: Option<&[u8]>, acl: i64) -> Node {
        let mut head = NodeHead { stat, acl: 0, num_children: 0 };
        head.set_acl(acl);
        Node::build(head, path, data)
    }

    /// The node with `head`, `path` and `data`, written straight into its allocation.
    fn build(head: NodeHead, path: &str, data: Option<&[u8]>) -> Node {
        let digest = digest::node_digest(path, data, &head.stat);
        let null = if data.is_none() { NULL_DATA } else { 0 };
        let long = path.len() >= usize::from(LONG_PATH);
        let data = data.unwrap_or_default();
        let len = LEN_AT + 1 + if long { 4 } else { 0 } + path.len() + data.len();
        let header = triomphe::HeaderWithLength::new(head, len);
        let mut arc = triomphe::UniqueArc::from_header_and_uninit_slice(header, len);
        let mut rest: &mut [std::mem::MaybeUninit<u8>] = &mut arc.slice;
        let mut put = |bytes: &[u8]| {
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(bytes.len());
            dst.write_copy_of_slice(bytes);
            rest = tail;
        };
        put(&digest.to_le_bytes());
        if long {
            let n = u32::try_from(path.len()).expect("paths are bounded by jute.maxbuffer");
            put(&[null | LONG_PATH]);
            put(&n.to_le_bytes());
        } else {
            put(&[null | path.len() as u8]);
        }
        put(path.as_bytes());
        put(data);
        debug_assert!(rest.is_empty());
        // SAFETY: the parts written above add up to `len`, so every byte is initialised.
        let arc = unsafe { arc.assume_init_slice_with_header() };
        Node(triomphe::Arc::into_thin(arc.shareable()))
    }

    /// Sets the child count in place when this is the only reference to the node (as while
    /// a snapshot is loaded); false, changing nothing, when the node is shared.
    fn set_num_children_if_unique(&mut self, n: u32) -> bool {
        self.0.with_arc_mut(|arc| {
            triomphe::Arc::get_mut(arc).map(|inner| inner.header_mut().num_children = n).is_some()
        })
    }

    /// Where the path starts in the bytes, and its length.
    #[inline]
    fn path_span(&self) -> (usize, usize) {
        let b = &self.0.slice;
        match b[LEN_AT] & !NULL_DATA {
            LONG_PATH => {
                let len = u32::from_le_bytes([
                    b[LEN_AT + 1],
                    b[LEN_AT + 2],
                    b[LEN_AT + 3],
                    b[LEN_AT + 4],
                ]);
                (LEN_AT + 5, len as usize)
            }
            short => (LEN_AT + 1, usize::from(short)),
        }
    }

    #[inline]
    fn path_bytes(&self) -> &[u8] {
        let (start, len) = self.path_span();
        &self.0.slice[start..start + len]
    }

    /// This node's share of the tree digest (0 under /zookeeper/), computed when it was built.
    fn digest(&self) -> u32 {
        let b = &self.0.slice;
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Path and data bytes as stored (for comparing whole nodes).
    fn stored(&self) -> &[u8] {
        &self.0.slice
    }

    /// The node's full path.
    pub fn path(&self) -> &str {
        // SAFETY: `Node::build`, the only constructor, copies these bytes from a `&str` and
        // records their length, so they are valid UTF-8. (Checking them again on every call
        // showed as 7% of loading a large snapshot.)
        unsafe { std::str::from_utf8_unchecked(self.path_bytes()) }
    }

    /// The node's data (a copy: replies own their bytes).
    pub fn data(&self) -> Data {
        match self.data_bytes() {
            None => Data::null(),
            Some(b) => Data::from_slice(b),
        }
    }

    /// The data bytes, `None` when null.
    pub fn data_bytes(&self) -> Option<&[u8]> {
        let (start, len) = self.path_span();
        (self.0.slice[LEN_AT] & NULL_DATA == 0).then(|| &self.0.slice[start + len..])
    }

    /// Length of the data (0 for null).
    pub fn data_len(&self) -> usize {
        let (start, len) = self.path_span();
        self.0.slice.len() - start - len
    }
}

/// A node being changed by [`DataTree::update_node`]: its head, and new data if set.
struct NodeEdit {
    head: NodeHead,
    data: Option<Data>,
}

impl NodeEdit {
    fn set_data(&mut self, data: &Data) {
        self.data = Some(data.clone());
    }
}

impl std::ops::Deref for NodeEdit {
    type Target = NodeHead;

    fn deref(&self) -> &NodeHead {
        &self.head
    }
}

impl std::ops::DerefMut for NodeEdit {
    fn deref_mut(&mut self) -> &mut NodeHead {
        &mut self.head
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.path_bytes() == other.path_bytes()
    }
}

impl Eq for Node {}

impl Ord for Node {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        path::cmp_paths(self.path_bytes(), other.path_bytes())
    }
}

impl PartialOrd for Node {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl equivalent::Equivalent<Node> for KeyQuery<'_> {
    fn equivalent(&self, key: &Node) -> bool {
        self.cmp_path(key.path_bytes()) == std::cmp::Ordering::Equal
    }
}

impl equivalent::Comparable<Node> for KeyQuery<'_> {
    fn compare(&self, key: &Node) -> std::cmp::Ordering {
        self.cmp_path(key.path_bytes())
    }
}

/// Settings that change how a tree interprets its content (not part of its state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeOptions {
    /// `zookeeper.extendedTypesEnabled`: owners with the top byte 0xff are TTL nodes.
    pub extended_types: bool,
}

/// One version of the data tree. See the module documentation.
#[derive(Clone, Debug)]
pub struct DataTree {
    nodes: PSet<Node>,
    acls: AclCache,
    ephemerals: OrdMap<i64, OrdSet<PathKey>>,
    containers: OrdSet<PathKey>,
    ttls: OrdSet<PathKey>,
    /// Paths that have a quota (a limits node under /zookeeper/quota).
    quotas: OrdSet<String>,
    digest: u64,
    data_size: i64,
    last_processed_zxid: i64,
    options: TreeOptions,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new(TreeOptions::default())
    }
}

impl PartialEq for DataTree {
    /// Two trees are equal when they hold the same nodes, ACLs and indexes. A node's ACL is
    /// compared as the list it names, not as its id (ids are local numbering; see [`AclCache`]).
    fn eq(&self, other: &Self) -> bool {
        let same_node = |a: &Node, b: &Node| {
            a.stat == b.stat
                && a.num_children == b.num_children
                && a.stored() == b.stored()
                && self.acls.get(a.acl())[..] == other.acls.get(b.acl())[..]
        };
        self.nodes.len() == other.nodes.len()
            && self.nodes.iter().zip(other.nodes.iter()).all(|(a, b)| same_node(a, b))
            && self.acls == other.acls
            && self.ephemerals == other.ephemerals
            && self.containers == other.containers
            && self.ttls == other.ttls
            && self.quotas == other.quotas
            && self.digest == other.digest
            && self.data_size == other.data_size
    }
}

/// Java's `String.length()`: UTF-16 code units.
fn java_len(s: &str) -> i64 {
    s.chars().map(|c| c.len_utf16() as i64).sum()
}

impl DataTree {
    /// A fresh tree: "/", "/zookeeper", "/zookeeper/quota" and "/zookeeper/config" (READ for
    /// everyone, aversion -1), exactly as a new ZooKeeper server has.
    pub fn new(options: TreeOptions) -> DataTree {
        let mut tree = DataTree::empty(options);
        let blank = |p: &str| {
            Node::new(p, StatPersisted::default(), &Data::empty(), acl::OPEN_ACL_UNSAFE_ID)
        };
        tree.insert_node(blank("/"));
        for p in [ZOOKEEPER_PATH, QUOTA_PATH, CONFIG_PATH] {
            tree.insert_node(blank(p));
            tree.update_node(path::parent_of(p), |n| n.num_children += 1);
        }
        let id = tree.acls.convert(&Acl::read_unsafe());
        tree.update_node(CONFIG_PATH, |n| {
            n.set_acl(id);
            n.stat.aversion = -1;
        });
        tree
    }

    /// ZooKeeper's `initConfigInZKDatabase`: `/zookeeper/config` holds the ensemble's
    /// membership text (`server.N=...` lines and `version=`), its mzxid the configuration's
    /// version, its data version -1 and its mtime `time`. Not a txn: each member sets it when
    /// it starts and when a sync replaces its state; it is outside the tree digest. A tree
    /// without the node (written before it existed) gets it back.
    pub fn set_config_node(&mut self, text: &[u8], version: i64, time: i64) {
        if self.node(CONFIG_PATH).is_none() {
            let n = Node::new(
                CONFIG_PATH,
                StatPersisted { aversion: -1, ..StatPersisted::default() },
                &Data::empty(),
                self.acls.convert(&Acl::read_unsafe()),
            );
            self.insert_node(n);
            self.update_node(ZOOKEEPER_PATH, |n| n.num_children += 1);
        }
        let data = Data::from(text.to_vec());
        self.update_node(CONFIG_PATH, |n| {
            n.set_data(&data);
            n.stat.mzxid = version;
            n.stat.mtime = time;
            n.stat.version = -1;
        });
    }

    /// A tree without even a root (the start of snapshot loading).
    pub(crate) fn empty(options: TreeOptions) -> DataTree {
        DataTree {
            nodes: PSet::new(),
            acls: AclCache::default(),
            ephemerals: OrdMap::new(),
            containers: OrdSet::new(),
            ttls: OrdSet::new(),
            quotas: OrdSet::new(),
            digest: 0,
            data_size: 0,
            last_processed_zxid: 0,
            options,
        }
    }

    /// The options this tree was made with.
    pub fn options(&self) -> &TreeOptions {
        &self.options
    }

    // ----------------------------------------------------------------------------------------
    // Reads

    /// The node at `path` ("" is the root, as in ZooKeeper).
    pub fn node(&self, path: &str) -> Option<&Node> {
        if !path.is_empty() && !path.starts_with('/') {
            return None;
        }
        self.nodes.get(&KeyQuery::Path(path))
    }

    /// True if `path` exists.
    pub fn exists(&self, path: &str) -> bool {
        self.node(path).is_some()
    }

    /// Classify an `ephemeralOwner` under this tree's options.
    pub fn ephemeral_type(&self, owner: i64) -> EphemeralType {
        if self.options.extended_types
            && owner & EXTENDED_MASK == EXTENDED_MASK
            && owner & RESERVED_BITS_MASK == 0
        {
            return EphemeralType::Ttl;
        }
        match owner {
            0 => EphemeralType::Void,
            CONTAINER_EPHEMERAL_OWNER => EphemeralType::Container,
            _ => EphemeralType::Normal,
        }
    }

    /// The client-visible Stat of a node: cversion = 2 × persisted − numChildren, and
    /// ephemeralOwner 0 for containers and TTL nodes.
    pub fn client_stat(&self, node: &Node) -> Stat {
        let s = &node.stat;
        let owner = match self.ephemeral_type(s.ephemeral_owner) {
            EphemeralType::Normal => s.ephemeral_owner,
            _ => 0,
        };
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(node.num_children as i32),
            aversion: s.aversion,
            ephemeral_owner: owner,
            data_length: node.data_len() as i32,
            num_children: node.num_children as i32,
            pzxid: s.pzxid,
        }
    }

    /// exists / stat.
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.node(path).map(|n| self.client_stat(n))
    }

    /// getData.
    pub fn get_data(&self, path: &str) -> Option<(Data, Stat)> {
        self.node(path).map(|n| (n.data(), self.client_stat(n)))
    }

    /// The (path, node) pairs of the children of `path`, in name order.
    pub fn children<'a>(&'a self, path: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let parent = if path.is_empty() { "/" } else { path };
        self.nodes
            .range(&KeyQuery::ChildrenStart(parent), KeyQuery::ChildrenEnd(parent))
            .map(|n| (n.path(), n))
    }

    /// getChildren / getChildren2: child names (sorted) and the node's Stat.
    pub fn get_children(&self, path: &str) -> Option<(Vec<String>, Stat)> {
        let node = self.node(path)?;
        let names = self.children(path).map(|(p, _)| path::split(p).1.to_owned()).collect();
        Some((names, self.client_stat(node)))
    }

    /// The ACL list of a node.
    pub fn acl_of(&self, node: &Node) -> Arc<[Acl]> {
        self.acls.get(node.acl())
    }

    /// getACL (without ZooKeeper's masking of digest ids for non-admins, which is the
    /// server's business).
    pub fn get_acl(&self, path: &str) -> Option<(Arc<[Acl]>, Stat)> {
        self.node(path).map(|n| (self.acl_of(n), self.client_stat(n)))
    }

    /// The ACL cache.
    pub fn acl_cache(&self) -> &AclCache {
        &self.acls
    }

    /// The ephemeral paths of a session, sorted.
    pub fn ephemerals(&self, session: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .ephemerals
            .get(&session)
            .map(|s| s.iter().map(|k| k.as_str().to_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// getEphemerals: the session's ephemeral paths that start with `prefix` ("" or "/" = all).
    pub fn get_ephemerals(&self, session: i64, prefix: &str) -> Vec<String> {
        let mut all = self.ephemerals(session);
        if !prefix.is_empty() && prefix != "/" {
            all.retain(|p| p.starts_with(prefix));
        }
        all
    }

    /// Sessions that own ephemeral nodes.
    pub fn sessions_with_ephemerals(&self) -> Vec<i64> {
        self.ephemerals.keys().copied().collect()
    }

    /// Total number of ephemeral nodes (mntr zk_ephemerals_count).
    pub fn ephemerals_count(&self) -> usize {
        self.ephemerals.values().map(|s| s.len()).sum()
    }

    /// Paths of container nodes.
    pub fn containers(&self) -> Vec<String> {
        self.containers.iter().map(|k| k.as_str().to_owned()).collect()
    }

    /// Paths of TTL nodes.
    pub fn ttls(&self) -> Vec<String> {
        self.ttls.iter().map(|k| k.as_str().to_owned()).collect()
    }

    /// getAllChildrenNumber: all descendants of `path` (for "/" this includes /zookeeper...).
    pub fn get_all_children_number(&self, path: &str) -> Option<i32> {
        self.node(path)?;
        if path == "/" {
            return Some(self.nodes.len() as i32 - 1);
        }
        let mut count = 0i32;
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            for (child, node) in self.children(&p) {
                count += 1;
                if node.num_children > 0 {
                    stack.push(child.to_owned());
                }
            }
        }
        Some(count)
    }

    /// ZooKeeper's node count: the root is stored twice ("" and "/"), so a fresh tree has 5.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + 1
    }

    /// Sum of path lengths (UTF-16 units, as Java counts) and data lengths of all nodes.
    pub fn approximate_data_size(&self) -> i64 {
        self.data_size
    }

    /// The tree digest (ZooKeeper 3.6+ digest version 2).
    pub fn digest(&self) -> i64 {
        self.digest as i64
    }

    /// The zxid of the last txn applied.
    pub fn last_processed_zxid(&self) -> i64 {
        self.last_processed_zxid
    }

    /// Sets the zxid the tree counts as applied (a restored tree takes the zxid it is
    /// installed at).
    pub fn set_last_processed_zxid(&mut self, zxid: i64) {
        self.last_processed_zxid = zxid;
    }

    /// The longest path with a quota that is `path` or an ancestor of it (never "/").
    pub fn max_quota_prefix(&self, path: &str) -> Option<&str> {
        if self.quotas.is_empty() {
            return None;
        }
        let mut candidate = path;
        loop {
            if candidate.is_empty() || candidate == "/" {
                return None;
            }
            if let Some(found) = self.quotas.get(candidate) {
                return Some(found.as_str());
            }
            candidate = path::split(candidate).0;
        }
    }

    /// Every node in depth-first pre-order from the root (a parent before its children,
    /// children in name order), as snapshots need them.
    pub fn iter_preorder(&self) -> PreOrder<'_> {
        PreOrder { tree: self, stack: Vec::new(), started: false }
    }

    // ----------------------------------------------------------------------------------------
    // Mutation primitives (used by apply and the snapshot builder)

    /// Insert a node that is not in the map yet, keeping digest, size and indexes in step.
    /// Does not touch the parent.
    fn insert_node(&mut self, node: Node) {
        self.account_node(&node);
        self.nodes.insert(node);
    }

    /// The digest, size and index bookkeeping of [`DataTree::insert_node`], without the insert.
    fn account_node(&mut self, node: &Node) {
        let path = node.path();
        self.digest = self.digest.wrapping_add(u64::from(node.digest()));
        self.data_size += java_len(path) + node.data_len() as i64;
        let owner = node.stat.ephemeral_owner;
        match self.ephemeral_type(owner) {
            EphemeralType::Container => {
                self.containers.insert(PathKey::new(path));
            }
            EphemeralType::Ttl => {
                self.ttls.insert(PathKey::new(path));
            }
            EphemeralType::Normal => {
                self.ephemerals.entry(owner).or_default().insert(PathKey::new(path));
            }
            EphemeralType::Void => {}
        }
    }

    /// Remove a node from the map and the indexes. Does not touch the parent.
    fn remove_node(&mut self, path: &str) -> Option<Node> {
        let node = self.nodes.remove(&KeyQuery::Path(path))?;
        let q = KeyQuery::Path(path);
        self.digest = self.digest.wrapping_sub(u64::from(node.digest()));
        self.data_size -= java_len(node.path()) + node.data_len() as i64;
        let owner = node.stat.ephemeral_owner;
        match self.ephemeral_type(owner) {
            EphemeralType::Container => {
                self.containers.remove(&q);
            }
            EphemeralType::Ttl => {
                self.ttls.remove(&q);
            }
            EphemeralType::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(&q);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            EphemeralType::Void => {}
        }
        Some(node)
    }

    /// Change a node (not its path or owner), keeping digest and size in step, in one descent
    /// of the map. Returns the old and the new node, or `None` if the node does not exist.
    fn update_node(&mut self, path: &str, f: impl FnOnce(&mut NodeEdit)) -> Option<(Node, Node)> {
        let mut new = None;
        let old = self.nodes.update(&KeyQuery::Path(path), |current| {
            let mut edit = NodeEdit { head: NodeHead::clone(current), data: None };
            f(&mut edit);
            let data = match &edit.data {
                Some(d) => d.as_option(),
                None => current.data_bytes(),
            };
            let node = Node::build(edit.head, current.path(), data);
            new = Some(node.clone());
            node
        })?;
        let new = new.expect("the new node was built");
        self.digest =
            self.digest.wrapping_sub(u64::from(old.digest())).wrapping_add(u64::from(new.digest()));
        self.data_size += new.data_len() as i64 - old.data_len() as i64;
        Some((old, new))
    }
}

/// Pre-order iterator over a tree; see [`DataTree::iter_preorder`].
pub struct PreOrder<'a> {
    tree: &'a DataTree,
    stack: Vec<pset::Range<'a, Node, KeyQuery<'a>>>,
    started: bool,
}

impl<'a> Iterator for PreOrder<'a> {
    type Item = (&'a str, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            let root = self.tree.nodes.get(&KeyQuery::Path("/"))?;
            self.push_children(root);
            return Some((root.path(), root));
        }
        loop {
            let top = self.stack.last_mut()?;
            match top.next() {
                Some(node) => {
                    self.push_children(node);
                    return Some((node.path(), node));
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

impl<'a> PreOrder<'a> {
    fn push_children(&mut self, node: &'a Node) {
        if node.num_children > 0 {
            let p = node.path();
            self.stack
                .push(self.tree.nodes.range(&KeyQuery::ChildrenStart(p), KeyQuery::ChildrenEnd(p)));
        }
    }
}

#[cfg(test)]
mod node_tests {
    use super::*;

    #[test]
    fn node_bytes_round_trip_for_short_long_and_null() {
        let stat = StatPersisted { czxid: 7, mzxid: 9, version: 3, ..StatPersisted::default() };
        for path_len in [1usize, 2, 126, 127, 128, 300, 70_000] {
            let path = format!("/{}", "p".repeat(path_len - 1));
            for data in [None, Some(&b""[..]), Some(&b"x"[..]), Some(&[0xffu8; 1000][..])] {
                let n = Node::from_parts(&path, stat.clone(), data, 5);
                assert_eq!(n.path(), path);
                assert_eq!(n.data_bytes(), data);
                assert_eq!(n.data_len(), data.map_or(0, <[u8]>::len));
                assert_eq!(n.digest(), digest::node_digest(&path, data, &stat));
                assert_eq!((n.acl(), n.num_children, &n.stat), (5, 0, &stat));
            }
        }
    }
}
