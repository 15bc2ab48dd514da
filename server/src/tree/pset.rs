//! A persistent ordered set: a copy-on-write B+tree whose nodes are shared between versions.
//! `clone()` is O(1); a change copies only the nodes on one root-to-leaf path, so the version a
//! reader or the snapshotter holds never changes under it.
//!
//! It holds the znodes of a [`super::DataTree`], and its shape is chosen for their memory. A leaf
//! is one 512-byte allocation of 62 keys (8-byte handles for znodes). A full node that gains a
//! key at (or within a few keys of) its end splits there, keeping the old node full and starting
//! a new one with the key, instead of splitting in the middle; and a key for a full leaf whose
//! neighbour has room goes in by moving one key over to that neighbour. Keys inserted in
//! ascending order, or nearly (a parent's children created by many sessions, a loading
//! snapshot), then leave the leaves full, about 8.3 bytes per key. A B-tree that always splits at the median leaves such leaves half full;
//! imbl's `OrdSet`, used before this set, came to 20 bytes per key that way
//! (docs/performance.md).
//!
//! Branch separators are clones of stored keys. Replacing a key replaces it as a separator too,
//! and removing a key that is a separator puts the next key there, so a separator never keeps an
//! old version of a znode (and its data) alive.

use std::cmp::Ordering;
use std::fmt;

use arrayvec::ArrayVec;
use equivalent::Comparable;
use triomphe::Arc;

/// Keys per leaf. With the reference count and the length, a leaf of 8-byte keys is 512 bytes,
/// an allocator size class. (Tests use small nodes, so that a few thousand keys make a deep
/// tree and every split, merge and refill path runs.)
#[cfg(not(test))]
const LEAF_CAP: usize = 62;
#[cfg(test)]
const LEAF_CAP: usize = 6;
/// A leaf below this many keys after a removal is merged with or refilled from a sibling.
const LEAF_MIN: usize = LEAF_CAP / 2;
/// A full leaf that gains a key this close to its end splits at the key, not in the middle.
#[cfg(not(test))]
const LEAF_NEAR_END: usize = 8;
#[cfg(test)]
const LEAF_NEAR_END: usize = 1;
/// Children per branch.
#[cfg(not(test))]
const BRANCH_CAP: usize = 32;
#[cfg(test)]
const BRANCH_CAP: usize = 4;
/// A branch below this many children after a removal is merged with or refilled from a sibling.
const BRANCH_MIN: usize = BRANCH_CAP / 2;

// Merging an underfull node with a sibling that cannot spare anything must fit one node, and a
// sibling that is refilled from must keep at least the minimum.
const _: () = assert!(2 * LEAF_MIN <= LEAF_CAP && 2 * BRANCH_MIN <= BRANCH_CAP && LEAF_MIN > 1);

#[derive(Clone)]
struct Leaf<T> {
    keys: ArrayVec<T, LEAF_CAP>,
}

#[derive(Clone)]
struct Branch<T> {
    /// `keys[i]` separates `children[i]` (every key below it) from `children[i + 1]` (every key
    /// at or above it).
    keys: ArrayVec<T, { BRANCH_CAP - 1 }>,
    /// One more than `keys`; never empty. All children have the same height.
    children: ArrayVec<Tree<T>, BRANCH_CAP>,
}

enum Tree<T> {
    Leaf(Arc<Leaf<T>>),
    Branch(Arc<Branch<T>>),
}

impl<T> Clone for Tree<T> {
    fn clone(&self) -> Self {
        match self {
            Tree::Leaf(l) => Tree::Leaf(Arc::clone(l)),
            Tree::Branch(b) => Tree::Branch(Arc::clone(b)),
        }
    }
}

impl<T> Tree<T> {
    /// Keys of a leaf, children of a branch.
    fn len(&self) -> usize {
        match self {
            Tree::Leaf(l) => l.keys.len(),
            Tree::Branch(b) => b.children.len(),
        }
    }

    fn is_underfull(&self) -> bool {
        match self {
            Tree::Leaf(l) => l.keys.len() < LEAF_MIN,
            Tree::Branch(b) => b.children.len() < BRANCH_MIN,
        }
    }

    /// The smallest key below this node (every node in a set is non-empty).
    fn first(&self) -> &T {
        let mut t = self;
        loop {
            match t {
                Tree::Leaf(l) => return &l.keys[0],
                Tree::Branch(b) => t = &b.children[0],
            }
        }
    }
}

/// Position of `q` in sorted `keys`, as `binary_search` gives it.
///
/// Not std's `binary_search_by`: that one is branchless, so each probe's address waits for the
/// previous comparison, and every comparison here is a likely cache miss on a znode's path.
/// With branches the CPU runs ahead on a guess and often has the next znode loading already;
/// and a hit ends the search early. (`corral-bench compare --workloads c --skip-zookeeper`,
/// alternating binaries: 525–603k getData/s against 511–552k with std's search.)
fn search<T, Q: Comparable<T> + ?Sized>(keys: &[T], q: &Q) -> Result<usize, usize> {
    let (mut low, mut high) = (0, keys.len());
    while low < high {
        let mid = low + (high - low) / 2;
        match q.compare(&keys[mid]) {
            Ordering::Greater => low = mid + 1,
            Ordering::Less => high = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(low)
}

/// The child of a branch whose range holds `q`, and whether `q` is the separator before it.
fn route<T, Q: Comparable<T> + ?Sized>(keys: &[T], q: &Q) -> (usize, bool) {
    match search(keys, q) {
        Ok(i) => (i + 1, true),
        Err(i) => (i, false),
    }
}

enum Inserted<T> {
    /// The key was there; here is the old one.
    Replaced(T),
    Added,
    /// The node split: this separator and the new node go right of it in the parent.
    Split(T, Tree<T>),
}

/// A persistent ordered set; see the module documentation.
pub struct PSet<T> {
    root: Option<Tree<T>>,
    len: usize,
}

impl<T> Clone for PSet<T> {
    fn clone(&self) -> Self {
        PSet { root: self.root.clone(), len: self.len }
    }
}

impl<T> Default for PSet<T> {
    fn default() -> Self {
        PSet::new()
    }
}

impl<T: Ord + fmt::Debug> fmt::Debug for PSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<T> PSet<T> {
    pub fn new() -> Self {
        PSet { root: None, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A set of `keys`, which must be in strictly ascending order, built bottom-up: full
    /// leaves and branches (the last two of a level evened out), no comparisons.
    pub fn from_sorted(keys: Vec<T>) -> Self
    where
        T: Ord + Clone,
    {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys in strictly ascending order");
        let len = keys.len();
        let mut keys = keys.into_iter();
        let mut level: Vec<Tree<T>> = group_sizes(len, LEAF_CAP, LEAF_MIN)
            .map(|n| Tree::Leaf(Arc::new(Leaf { keys: keys.by_ref().take(n).collect() })))
            .collect();
        while level.len() > 1 {
            let mut nodes = std::mem::take(&mut level).into_iter();
            level = group_sizes(nodes.len(), BRANCH_CAP, BRANCH_MIN)
                .map(|n| {
                    let children: ArrayVec<Tree<T>, BRANCH_CAP> = nodes.by_ref().take(n).collect();
                    let keys = children[1..].iter().map(|c| c.first().clone()).collect();
                    Tree::Branch(Arc::new(Branch { keys, children }))
                })
                .collect();
        }
        PSet { root: level.pop(), len }
    }

    /// Every key, in order.
    pub fn iter(&self) -> Range<'_, T, T> {
        let mut r = Range { stack: Vec::new(), leaf: &[], pos: 0, end: None };
        if let Some(root) = &self.root {
            r.descend_first(root);
        }
        r
    }

    /// The keys from `start` (included) to `end` (excluded), in order.
    pub fn range<Q: Comparable<T>>(&self, start: &Q, end: Q) -> Range<'_, T, Q> {
        let mut r = Range { stack: Vec::new(), leaf: &[], pos: 0, end: Some(end) };
        let Some(mut t) = self.root.as_ref() else { return r };
        loop {
            match t {
                Tree::Branch(b) => {
                    let i = route(&b.keys, start).0;
                    r.stack.push((&**b, i));
                    t = &b.children[i];
                }
                Tree::Leaf(l) => {
                    r.leaf = &l.keys;
                    r.pos = search(&l.keys, start).unwrap_or_else(|i| i);
                    return r;
                }
            }
        }
    }
}

impl<T: Ord + Clone> PSet<T> {
    /// The stored key equal to `q`.
    pub fn get<Q: Comparable<T> + ?Sized>(&self, q: &Q) -> Option<&T> {
        let mut t = self.root.as_ref()?;
        loop {
            match t {
                Tree::Branch(b) => t = &b.children[route(&b.keys, q).0],
                Tree::Leaf(l) => return search(&l.keys, q).ok().map(|i| &l.keys[i]),
            }
        }
    }

    /// Adds `value`, or replaces the equal key and returns it.
    pub fn insert(&mut self, value: T) -> Option<T> {
        let Some(root) = self.root.as_mut() else {
            let mut keys = ArrayVec::new();
            keys.push(value);
            self.root = Some(Tree::Leaf(Arc::new(Leaf { keys })));
            self.len = 1;
            return None;
        };
        match insert_into(root, value) {
            Inserted::Replaced(old) => return Some(old),
            Inserted::Added => {}
            Inserted::Split(separator, right) => {
                let left = self.root.take().expect("the root was split");
                let mut keys = ArrayVec::new();
                keys.push(separator);
                let mut children = ArrayVec::new();
                children.push(left);
                children.push(right);
                self.root = Some(Tree::Branch(Arc::new(Branch { keys, children })));
            }
        }
        self.len += 1;
        None
    }

    /// Replaces the key equal to `q` with `f` of it (a key equal to it) in one descent, and
    /// returns the old key; `None` (and `f` not called) if there is none. A miss still copies
    /// the shared nodes on its path (harmless, but callers expect a hit).
    pub fn update<Q: Comparable<T> + ?Sized>(
        &mut self,
        q: &Q,
        f: impl FnOnce(&T) -> T,
    ) -> Option<T> {
        update_in(self.root.as_mut()?, q, f)
    }

    /// Removes the key equal to `q` and returns it. A miss still copies the shared nodes on its
    /// path (harmless, but callers expect a hit).
    pub fn remove<Q: Comparable<T> + ?Sized>(&mut self, q: &Q) -> Option<T> {
        let mut was_separator = false;
        let removed = remove_from(self.root.as_mut()?, q, &mut was_separator)?;
        self.len -= 1;
        loop {
            match &self.root {
                Some(t) if t.len() == 0 => self.root = None,
                Some(Tree::Branch(b)) if b.children.len() == 1 => {
                    self.root = Some(b.children[0].clone());
                    continue;
                }
                _ => {}
            }
            break;
        }
        if was_separator {
            if let Some(root) = self.root.as_mut() {
                replace_separator(root, q);
            }
        }
        Some(removed)
    }
}

/// Sizes of the groups `n` items are cut into: groups of `cap`, the last two evened out if the
/// last would be below `min` (each then has at least `min`, as `cap + 1 >= 2 * min`).
fn group_sizes(n: usize, cap: usize, min: usize) -> impl Iterator<Item = usize> {
    let (full, rest) = (n / cap, n % cap);
    let (body, tail): (usize, [usize; 2]) = match (full, rest) {
        (_, 0) => (full, [0, 0]),
        (0, r) => (0, [r, 0]),
        (f, r) if r >= min => (f, [r, 0]),
        (f, r) => (f - 1, [(cap + r) - (cap + r) / 2, (cap + r) / 2]),
    };
    std::iter::repeat_n(cap, body).chain(tail.into_iter().filter(|&g| g > 0))
}

fn insert_into<T: Ord + Clone>(tree: &mut Tree<T>, value: T) -> Inserted<T> {
    match tree {
        Tree::Leaf(leaf) => {
            let leaf = Arc::make_mut(leaf);
            match search(&leaf.keys, &value) {
                Ok(i) => Inserted::Replaced(std::mem::replace(&mut leaf.keys[i], value)),
                Err(i) if !leaf.keys.is_full() => {
                    leaf.keys.insert(i, value);
                    Inserted::Added
                }
                Err(i) => split_leaf(leaf, i, value),
            }
        }
        Tree::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let (i, is_separator) = route(&branch.keys, &value);
            let value = match shift_to_sibling(branch, i, value) {
                Ok(()) => return Inserted::Added,
                Err(value) => value,
            };
            let separator = is_separator.then(|| value.clone());
            match insert_into(&mut branch.children[i], value) {
                Inserted::Replaced(old) => {
                    if let Some(s) = separator {
                        branch.keys[i - 1] = s;
                    }
                    Inserted::Replaced(old)
                }
                Inserted::Added => Inserted::Added,
                Inserted::Split(s, right) if branch.children.is_full() => {
                    split_branch(branch, i, s, right)
                }
                Inserted::Split(s, right) => {
                    branch.keys.insert(i, s);
                    branch.children.insert(i + 1, right);
                    Inserted::Added
                }
            }
        }
    }
}

/// A new key for child `i`, a full leaf, goes in by moving that leaf's last key to the next
/// leaf or its first key to the previous one, if either has room; `Err` gives the key back if
/// not (or if child `i` is no full leaf, or holds the key). Keys that arrive nearly but not
/// quite in order (creates from many sessions) would otherwise split a full leaf and strand
/// the few late keys in a leaf of their own.
fn shift_to_sibling<T: Ord + Clone>(branch: &mut Branch<T>, i: usize, value: T) -> Result<(), T> {
    let Tree::Leaf(leaf) = &branch.children[i] else { return Err(value) };
    if !leaf.keys.is_full() {
        return Err(value);
    }
    let Err(pos) = search(&leaf.keys, &value) else { return Err(value) };
    let has_room = |t: &Tree<T>| t.len() < LEAF_CAP;
    if branch.children.get(i + 1).is_some_and(has_room) {
        let (left, right) = branch.children.split_at_mut(i + 1);
        let (Tree::Leaf(a), Tree::Leaf(b)) = (&mut left[i], &mut right[0]) else {
            unreachable!("siblings have one height")
        };
        let a = Arc::make_mut(a);
        let moved = if pos == LEAF_CAP {
            value
        } else {
            let last = a.keys.pop().expect("the leaf is full");
            a.keys.insert(pos, value);
            last
        };
        let b = Arc::make_mut(b);
        b.keys.insert(0, moved);
        branch.keys[i] = b.keys[0].clone();
        return Ok(());
    }
    if i > 0 && has_room(&branch.children[i - 1]) {
        let (left, right) = branch.children.split_at_mut(i);
        let (Tree::Leaf(a), Tree::Leaf(b)) = (&mut left[i - 1], &mut right[0]) else {
            unreachable!("siblings have one height")
        };
        let b = Arc::make_mut(b);
        let moved = if pos == 0 {
            value
        } else {
            let first = b.keys.remove(0);
            b.keys.insert(pos - 1, value);
            first
        };
        Arc::make_mut(a).keys.push(moved);
        branch.keys[i - 1] = b.keys[0].clone();
        return Ok(());
    }
    Err(value)
}

/// Splits a full leaf that `value` goes into at position `i`.
fn split_leaf<T: Clone>(leaf: &mut Leaf<T>, i: usize, value: T) -> Inserted<T> {
    let mut right = ArrayVec::<T, LEAF_CAP>::new();
    if i == LEAF_CAP {
        // Appending: the leaf stays full and the new one starts with the key.
        right.push(value);
    } else if i >= LEAF_CAP - LEAF_NEAR_END {
        // Appending, give or take a few keys that arrived out of order (creates from many
        // sessions): split at the key, so the leaf stays full and the new one starts with the
        // few keys above it.
        right.extend(leaf.keys.drain(i..));
        leaf.keys.push(value);
    } else {
        right.extend(leaf.keys.drain(LEAF_MIN..));
        if i <= LEAF_MIN {
            leaf.keys.insert(i, value);
        } else {
            right.insert(i - LEAF_MIN, value);
        }
    }
    Inserted::Split(right[0].clone(), Tree::Leaf(Arc::new(Leaf { keys: right })))
}

/// Splits a full branch whose child `i` split into itself, `separator` and `new_child`.
fn split_branch<T>(
    branch: &mut Branch<T>,
    i: usize,
    separator: T,
    new_child: Tree<T>,
) -> Inserted<T> {
    if i + 1 == BRANCH_CAP {
        // The last child split: the branch stays full and the new one starts with the child.
        let mut children = ArrayVec::new();
        children.push(new_child);
        return Inserted::Split(
            separator,
            Tree::Branch(Arc::new(Branch { keys: ArrayVec::new(), children })),
        );
    }
    let mut keys: ArrayVec<T, { BRANCH_CAP - 1 }> = branch.keys.drain(BRANCH_MIN..).collect();
    let up = branch.keys.pop().expect("a full branch has keys");
    let mut children: ArrayVec<Tree<T>, BRANCH_CAP> = branch.children.drain(BRANCH_MIN..).collect();
    if i < BRANCH_MIN {
        branch.keys.insert(i, separator);
        branch.children.insert(i + 1, new_child);
    } else {
        keys.insert(i - BRANCH_MIN, separator);
        children.insert(i - BRANCH_MIN + 1, new_child);
    }
    Inserted::Split(up, Tree::Branch(Arc::new(Branch { keys, children })))
}

fn update_in<T: Ord + Clone, Q: Comparable<T> + ?Sized>(
    tree: &mut Tree<T>,
    q: &Q,
    f: impl FnOnce(&T) -> T,
) -> Option<T> {
    match tree {
        Tree::Leaf(leaf) => {
            let leaf = Arc::make_mut(leaf);
            let i = search(&leaf.keys, q).ok()?;
            let new = f(&leaf.keys[i]);
            debug_assert!(new == leaf.keys[i], "an update keeps the key");
            Some(std::mem::replace(&mut leaf.keys[i], new))
        }
        Tree::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let (i, is_separator) = route(&branch.keys, q);
            let old = update_in(&mut branch.children[i], q, f)?;
            if is_separator {
                branch.keys[i - 1] = branch.children[i].first().clone();
            }
            Some(old)
        }
    }
}

fn remove_from<T: Ord + Clone, Q: Comparable<T> + ?Sized>(
    tree: &mut Tree<T>,
    q: &Q,
    was_separator: &mut bool,
) -> Option<T> {
    match tree {
        Tree::Leaf(leaf) => {
            let leaf = Arc::make_mut(leaf);
            let i = search(&leaf.keys, q).ok()?;
            Some(leaf.keys.remove(i))
        }
        Tree::Branch(branch) => {
            let branch = Arc::make_mut(branch);
            let (i, is_separator) = route(&branch.keys, q);
            *was_separator |= is_separator;
            let removed = remove_from(&mut branch.children[i], q, was_separator)?;
            if branch.children[i].len() == 0 {
                // An only child (a node an append split started) lost its last key: drop it
                // with a separator next to it. A branch left empty is dropped by its parent.
                branch.children.remove(i);
                if !branch.keys.is_empty() {
                    branch.keys.remove(i.saturating_sub(1));
                }
            } else if branch.children[i].is_underfull() && branch.children.len() > 1 {
                rebalance(branch, i);
            }
            Some(removed)
        }
    }
}

/// Child `i` of `branch` is below the minimum: merge it with a sibling if both fit one node,
/// else move keys (or children) over from the sibling until it has the minimum.
fn rebalance<T: Clone>(branch: &mut Branch<T>, i: usize) {
    let l = if i > 0 { i - 1 } else { i };
    let r = l + 1;
    let fits = match (&branch.children[l], &branch.children[r]) {
        (Tree::Leaf(a), Tree::Leaf(b)) => a.keys.len() + b.keys.len() <= LEAF_CAP,
        (a, b) => a.len() + b.len() <= BRANCH_CAP,
    };
    if fits {
        let right = branch.children.remove(r);
        let separator = branch.keys.remove(l);
        match (&mut branch.children[l], right) {
            (Tree::Leaf(a), Tree::Leaf(b)) => {
                Arc::make_mut(a).keys.extend(Arc::unwrap_or_clone(b).keys);
            }
            (Tree::Branch(a), Tree::Branch(b)) => {
                let (a, b) = (Arc::make_mut(a), Arc::unwrap_or_clone(b));
                a.keys.push(separator);
                a.keys.extend(b.keys);
                a.children.extend(b.children);
            }
            _ => unreachable!("siblings have one height"),
        }
        return;
    }
    let (left, right) = branch.children.split_at_mut(r);
    let separator = &mut branch.keys[l];
    match (&mut left[l], &mut right[0]) {
        (Tree::Leaf(a), Tree::Leaf(b)) => {
            let (a, b) = (Arc::make_mut(a), Arc::make_mut(b));
            if i == l {
                let n = LEAF_MIN - a.keys.len();
                a.keys.extend(b.keys.drain(..n));
            } else {
                let n = LEAF_MIN - b.keys.len();
                let mut keys: ArrayVec<T, LEAF_CAP> = a.keys.drain(a.keys.len() - n..).collect();
                keys.extend(b.keys.drain(..));
                b.keys = keys;
            }
            *separator = b.keys[0].clone();
        }
        (Tree::Branch(a), Tree::Branch(b)) => {
            let (a, b) = (Arc::make_mut(a), Arc::make_mut(b));
            if i == l {
                while a.children.len() < BRANCH_MIN {
                    let up = b.keys.remove(0);
                    a.keys.push(std::mem::replace(separator, up));
                    a.children.push(b.children.remove(0));
                }
            } else {
                while b.children.len() < BRANCH_MIN {
                    let up = a.keys.pop().expect("the sibling has keys to spare");
                    b.keys.insert(0, std::mem::replace(separator, up));
                    b.children.insert(0, a.children.pop().expect("and children"));
                }
            }
        }
        _ => unreachable!("siblings have one height"),
    }
}

/// A removed key was a separator: put the smallest key to its right in its place.
fn replace_separator<T: Ord + Clone, Q: Comparable<T> + ?Sized>(tree: &mut Tree<T>, q: &Q) {
    let mut t = tree;
    while let Tree::Branch(branch) = t {
        let branch = Arc::make_mut(branch);
        match search(&branch.keys, q) {
            Ok(i) => {
                branch.keys[i] = branch.children[i + 1].first().clone();
                return;
            }
            Err(i) => t = &mut branch.children[i],
        }
    }
}

/// Keys of a [`PSet`] in order, from a start up to an optional end (excluded).
pub struct Range<'a, T, Q> {
    /// The branches above the current leaf, each with the index of the child being visited.
    stack: Vec<(&'a Branch<T>, usize)>,
    leaf: &'a [T],
    pos: usize,
    end: Option<Q>,
}

impl<'a, T, Q> Range<'a, T, Q> {
    fn descend_first(&mut self, mut t: &'a Tree<T>) {
        loop {
            match t {
                Tree::Branch(b) => {
                    self.stack.push((&**b, 0));
                    t = &b.children[0];
                }
                Tree::Leaf(l) => {
                    self.leaf = &l.keys;
                    self.pos = 0;
                    return;
                }
            }
        }
    }

    /// Moves to the next leaf; false at the end.
    fn next_leaf(&mut self) -> bool {
        while let Some((branch, i)) = self.stack.pop() {
            if i + 1 < branch.children.len() {
                self.stack.push((branch, i + 1));
                self.descend_first(&branch.children[i + 1]);
                return true;
            }
        }
        self.finish();
        false
    }

    fn finish(&mut self) {
        self.stack.clear();
        self.leaf = &[];
        self.pos = 0;
    }
}

impl<'a, T, Q: Comparable<T>> Iterator for Range<'a, T, Q> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        while self.pos == self.leaf.len() {
            if !self.next_leaf() {
                return None;
            }
        }
        let item = &self.leaf[self.pos];
        if self.end.as_ref().is_some_and(|end| end.compare(item) != Ordering::Greater) {
            self.finish();
            return None;
        }
        self.pos += 1;
        Some(item)
    }
}

impl<T, Q: Comparable<T>> std::iter::FusedIterator for Range<'_, T, Q> {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Shape of a set: (leaves, keys in leaves), after checking every invariant.
    fn check<T: Ord + Clone + fmt::Debug>(set: &PSet<T>) -> (usize, usize) {
        /// Checks `t` holds keys in [lo, hi) and returns (height, leaves, keys).
        fn walk<T: Ord + fmt::Debug>(
            t: &Tree<T>,
            lo: Option<&T>,
            hi: Option<&T>,
            is_root: bool,
        ) -> (usize, usize, usize) {
            assert!(is_root || t.len() > 0, "empty non-root node");
            match t {
                Tree::Leaf(l) => {
                    assert!(l.keys.windows(2).all(|w| w[0] < w[1]), "leaf out of order");
                    if let (Some(lo), Some(first)) = (lo, l.keys.first()) {
                        assert!(lo <= first, "{lo:?} > {first:?}");
                    }
                    if let (Some(hi), Some(last)) = (hi, l.keys.last()) {
                        assert!(last < hi, "{last:?} >= {hi:?}");
                    }
                    (0, 1, l.keys.len())
                }
                Tree::Branch(b) => {
                    assert_eq!(b.keys.len() + 1, b.children.len());
                    assert!(b.keys.windows(2).all(|w| w[0] < w[1]), "separators out of order");
                    let (mut height, mut leaves, mut keys) = (None, 0, 0);
                    for (i, c) in b.children.iter().enumerate() {
                        let clo = if i == 0 { lo } else { Some(&b.keys[i - 1]) };
                        let chi = b.keys.get(i).or(hi);
                        let (h, l, k) = walk(c, clo, chi, false);
                        assert!(height.is_none_or(|x| x == h), "leaves at different depths");
                        height = Some(h);
                        leaves += l;
                        keys += k;
                    }
                    (height.unwrap() + 1, leaves, keys)
                }
            }
        }
        let Some(root) = &set.root else {
            assert_eq!(set.len, 0);
            return (0, 0);
        };
        let (_, leaves, keys) = walk(root, None, None, true);
        assert_eq!(keys, set.len);
        assert!(keys > 0, "an empty set has no root");
        (leaves, keys)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
        /// Replace the key with a new version, if it is there.
        Update(u16),
        /// Remove this many consecutive keys from a start.
        RemoveRun(u16, u16),
        /// Insert this many keys in ascending order from a start.
        Run(u16, u8),
        /// Remember this version (to check it later, after more changes).
        Keep,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..3000).prop_map(Op::Insert),
            4 => (0u16..3000).prop_map(Op::Remove),
            2 => (0u16..3000).prop_map(Op::Update),
            1 => (0u16..3000, 0u16..1500).prop_map(|(s, n)| Op::RemoveRun(s, n)),
            1 => (0u16..3000, any::<u8>()).prop_map(|(s, n)| Op::Run(s, n)),
            1 => Just(Op::Keep),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The set agrees with std's BTreeSet after any sequence of changes, keeps its
        /// invariants, and versions kept earlier are unchanged by later changes.
        #[test]
        fn behaves_like_btreeset(
            initial in prop::collection::btree_set(0u16..3000, 0..2500),
            ops in prop::collection::vec(op(), 1..1500),
        ) {
            // The model maps each key to the version (op number) stored for it, so a replaced
            // key must be the new one. The set starts bulk-built from `initial`.
            let mut set = PSet::from_sorted(initial.iter().map(|&k| V(k, u32::MAX)).collect());
            let mut model: BTreeMap<u16, u32> = initial.iter().map(|&k| (k, u32::MAX)).collect();
            check(&set);
            let mut kept = Vec::new();
            let pairs = |s: &PSet<V>| s.iter().map(|v| (v.0, v.1)).collect::<Vec<_>>();
            let model_pairs = |m: &BTreeMap<u16, u32>| m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>();
            for (n, op) in ops.into_iter().enumerate() {
                let n = n as u32;
                match op {
                    Op::Insert(k) => {
                        let old = set.insert(V(k, n)).map(|o| (o.0, o.1));
                        prop_assert_eq!(old, model.insert(k, n).map(|v| (k, v)));
                    }
                    Op::Remove(k) => {
                        let got = set.remove(&Key(k)).map(|o| (o.0, o.1));
                        prop_assert_eq!(got, model.remove(&k).map(|v| (k, v)));
                    }
                    Op::Update(k) => {
                        let old = set.update(&Key(k), |v| V(v.0, n)).map(|o| (o.0, o.1));
                        let want = model.get_mut(&k).map(|v| (k, std::mem::replace(v, n)));
                        prop_assert_eq!(old, want);
                    }
                    Op::RemoveRun(start, count) => {
                        for k in start..start.saturating_add(count) {
                            let got = set.remove(&Key(k)).map(|o| (o.0, o.1));
                            prop_assert_eq!(got, model.remove(&k).map(|v| (k, v)));
                        }
                    }
                    Op::Run(start, count) => {
                        for k in start..start.saturating_add(u16::from(count)) {
                            set.insert(V(k, n));
                            model.insert(k, n);
                        }
                    }
                    Op::Keep => kept.push((set.clone(), model.clone())),
                }
                check(&set);
            }
            prop_assert_eq!(pairs(&set), model_pairs(&model));
            prop_assert_eq!(set.len(), model.len());
            for k in [0u16, 1, 1000, 2999, 3000] {
                prop_assert_eq!(set.get(&Key(k)).map(|e| e.1), model.get(&k).copied());
                let to = k.saturating_add(200);
                let got: Vec<u16> = set.range(&Key(k), Key(to)).map(|e| e.0).collect();
                let want: Vec<u16> = model.range(k..to).map(|e| *e.0).collect();
                prop_assert_eq!(got, want);
            }
            for (old, m) in kept {
                check(&old);
                prop_assert_eq!(pairs(&old), model_pairs(&m));
            }
        }
    }

    /// A key (ordered by its first field) and a version.
    #[derive(Clone, Debug)]
    struct V(u16, u32);

    impl PartialEq for V {
        fn eq(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    impl Eq for V {}

    impl Ord for V {
        fn cmp(&self, other: &Self) -> Ordering {
            self.0.cmp(&other.0)
        }
    }

    impl PartialOrd for V {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    /// Looks keys up by their first field.
    struct Key(u16);

    impl equivalent::Equivalent<V> for Key {
        fn equivalent(&self, k: &V) -> bool {
            self.0 == k.0
        }
    }

    impl Comparable<V> for Key {
        fn compare(&self, k: &V) -> Ordering {
            self.0.cmp(&k.0)
        }
    }

    #[test]
    fn ascending_inserts_fill_every_leaf() {
        let mut set = PSet::new();
        // Keys in order, as a snapshot loads them or a client creates sequential children;
        // and an ascending run in the middle of existing keys.
        for k in (0..100_000u32).map(|k| k * 2) {
            set.insert(k);
        }
        let (leaves, keys) = check(&set);
        assert_eq!(leaves, keys.div_ceil(LEAF_CAP));
        let before = leaves;
        for k in 1000..20_000u32 {
            set.insert(k * 2 + 1);
        }
        let (leaves, _) = check(&set);
        // The 19,000 new keys land in the leaves that held keys 2000..40000 (full; their
        // median splits leave one half-full leaf each), then fill new leaves.
        assert!(
            leaves - before <= 19_000 / LEAF_CAP + (40_000 - 2000) / 2 / LEAF_CAP + 2,
            "{leaves}"
        );
    }

    #[test]
    fn interleaved_appends_then_deletes_keep_the_set_valid() {
        // corral-bench tree's pattern: children appended to 1000 parents in turn (so leaves and
        // branches split at their ends and start nodes with one child), then the first tenth
        // deleted in creation order, emptying those one-child nodes.
        let key = |i: u32| (i % 1000) * 1000 + i / 1000;
        let mut set = PSet::new();
        for i in 0..1_000_000 {
            set.insert(key(i));
        }
        check(&set);
        for i in 0..100_000 {
            assert_eq!(set.remove(&key(i)), Some(key(i)));
            if i % 10_000 == 0 {
                check(&set);
            }
        }
        check(&set);
        assert_eq!(set.len(), 900_000);
        assert!(set.iter().copied().eq((0..1_000_000)
            .skip(100_000)
            .map(key)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()));
    }

    #[test]
    fn bulk_built_sets_are_full_and_valid_at_every_size() {
        let sizes = (0..200).chain([
            LEAF_CAP * BRANCH_CAP - 1,
            LEAF_CAP * BRANCH_CAP,
            LEAF_CAP * BRANCH_CAP + 1,
            LEAF_CAP * (BRANCH_CAP + 1) + 3,
            LEAF_CAP * BRANCH_CAP * BRANCH_CAP + LEAF_CAP * 5 + 7,
        ]);
        for n in sizes {
            let set = PSet::from_sorted((0..n as u32).collect());
            fn no_underfull(t: &Tree<u32>) -> bool {
                !t.is_underfull()
                    && match t {
                        Tree::Leaf(_) => true,
                        Tree::Branch(b) => b.children.iter().all(no_underfull),
                    }
            }
            if let Some(Tree::Branch(root)) = &set.root {
                assert!(
                    root.children.iter().all(no_underfull),
                    "{n} keys: a node below the minimum"
                );
            }
            let (leaves, keys) = check(&set);
            assert_eq!(keys, n);
            assert_eq!(leaves, n.div_ceil(LEAF_CAP), "{n} keys");
            assert!(set.iter().copied().eq(0..n as u32));
            if n > LEAF_CAP {
                assert_eq!(set.get(&(n as u32 / 2)), Some(&(n as u32 / 2)));
            }
        }
    }

    #[test]
    fn nearly_ascending_inserts_fill_nearly_every_leaf() {
        // Keys in order but shuffled within small windows, as pipelined creates from several
        // sessions arrive. With the real leaf (62 keys, windows of 8) this kept 90% of the
        // ideal fill; tests build 6-key leaves, where a window of 2 is a third of a leaf, and
        // keep 85% (without `shift_to_sibling`, 56%).
        let window = 2;
        let mut keys: Vec<u32> = (0..(window * 12_500) as u32).collect();
        for (n, w) in keys.chunks_exact_mut(window).enumerate() {
            w.rotate_left(n % (window - 1) + 1);
            w.swap(0, n % (window - 2).max(1));
        }
        let mut set = PSet::new();
        for k in keys {
            set.insert(k);
        }
        let (leaves, keys) = check(&set);
        let ideal = keys.div_ceil(LEAF_CAP);
        assert!(leaves * 100 <= ideal * 120, "{leaves} leaves, ideal {ideal}");
    }

    #[test]
    fn removed_and_replaced_separators_do_not_keep_old_keys() {
        let mut set = PSet::new();
        let keys: Vec<std::sync::Arc<u32>> = (0..10_000).map(std::sync::Arc::new).collect();
        for k in &keys {
            set.insert(k.clone());
        }
        // Replace every key with an equal new one, and remove every third: the set holds the
        // only other reference to the old keys, so none may have one left.
        for (i, k) in keys.iter().enumerate() {
            match i % 3 {
                0 => assert!(set.remove(&**k).is_some()),
                1 => assert!(set.insert(std::sync::Arc::new(**k)).is_some()),
                _ => assert!(set.update(&**k, |k| std::sync::Arc::new(**k)).is_some()),
            }
        }
        check(&set);
        let held: Vec<u32> =
            keys.iter().filter(|k| std::sync::Arc::strong_count(k) > 1).map(|k| **k).collect();
        assert!(held.is_empty(), "old keys kept alive: {held:?}");
        assert_eq!(set.len(), 10_000 - 3334);
    }

    #[test]
    fn removing_everything_empties_the_set_in_any_order() {
        for order in [0, 1, 2] {
            let mut set = PSet::new();
            for k in 0..5000u32 {
                set.insert(k);
            }
            let mut ks: Vec<u32> = (0..5000).collect();
            match order {
                0 => {}
                1 => ks.reverse(),
                _ => ks.sort_by_key(|k| (k * 7919) % 5000),
            }
            for (n, k) in ks.iter().enumerate() {
                assert_eq!(set.remove(k), Some(*k));
                if n % 97 == 0 {
                    check(&set);
                }
            }
            assert!(set.is_empty() && set.root.is_none() && set.iter().next().is_none());
        }
    }
}
