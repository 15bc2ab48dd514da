//! Watches: who is told what when a txn changes the tree.
//!
//! ZooKeeper keeps two tables, *data* watches (set by getData and exists, including exists on a
//! missing node) and *child* watches (set by getChildren), keyed by path, with the watcher being
//! the client connection. Standard watches fire once and are removed; persistent watches
//! (addWatch PERSISTENT) sit in both tables and stay; persistent-recursive watches sit in the
//! data table and match their path and every descendant, never for NodeChildrenChanged.
//!
//! Which table a change consults (ZooKeeper's DataTree): NodeCreated and NodeDataChanged →
//! data; NodeChildrenChanged → child; NodeDeleted → both. A connection watching a path in
//! several ways is told once per change.
//!
//! This module is a pure data structure: no sockets, no tree, no clock. The server owns one,
//! behind a lock shared by the applier (which triggers) and readers (which register).
//!
//! Layout (a million watches must stay small, issue 17): a watched path is stored once, in a
//! slot numbered by a `u32`, with one set per kind of the watchers on it, as `u32` numbers of
//! the watchers; each watcher keeps the set of its (slot, kind) pairs packed in a `u64`, so
//! closing a connection finds its watches without scanning. A watch costs two small hash-set
//! entries (~30 bytes) instead of two copies of its path. Slots and watcher numbers are
//! reused once empty.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::proto::{AddWatchMode, EventType, WatcherType};

/// Identifies a watcher: the server's id of a client connection.
pub type WatcherId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Data = 0,
    Child = 1,
    Persistent = 2,
    Recursive = 3,
}

const KINDS: [Kind; 4] = [Kind::Data, Kind::Child, Kind::Persistent, Kind::Recursive];

/// A watched path and, per kind, the numbers of the watchers on it.
#[derive(Debug, Default)]
struct Slot {
    path: Option<Arc<str>>,
    sets: [HashSet<u32>; 4],
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.sets.iter().all(HashSet::is_empty)
    }
}

/// A watcher and its (slot, kind) pairs, packed as `slot << 2 | kind`.
#[derive(Debug)]
struct Watcher {
    id: WatcherId,
    watches: HashSet<u64>,
}

fn pack(slot: u32, kind: Kind) -> u64 {
    u64::from(slot) << 2 | kind as u64
}

fn unpack(p: u64) -> (u32, Kind) {
    ((p >> 2) as u32, KINDS[(p & 3) as usize])
}

/// The watches of every connection.
#[derive(Debug, Default)]
pub struct WatchManager {
    slot_of: HashMap<Arc<str>, u32>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    number_of: HashMap<WatcherId, u32>,
    watchers: Vec<Option<Watcher>>,
    free_numbers: Vec<u32>,
    count: usize,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Who.
    pub watcher: WatcherId,
    /// The event type.
    pub event: EventType,
    /// The znode's path.
    pub path: String,
}

impl WatchManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, path: &str) -> Option<u32> {
        self.slot_of.get(path).copied()
    }

    fn slot_or_new(&mut self, path: &str) -> u32 {
        if let Some(s) = self.slot(path) {
            return s;
        }
        let name: Arc<str> = Arc::from(path);
        let s = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 watched paths")
            }
        };
        self.slots[s as usize].path = Some(name.clone());
        self.slot_of.insert(name, s);
        s
    }

    /// Frees a slot with no watcher left.
    fn release_slot(&mut self, s: u32) {
        let slot = &mut self.slots[s as usize];
        if !slot.is_empty() {
            return;
        }
        if let Some(p) = slot.path.take() {
            self.slot_of.remove(&p);
            // Give the memory of big sets back.
            slot.sets = Default::default();
            self.free_slots.push(s);
        }
    }

    fn number_or_new(&mut self, w: WatcherId) -> u32 {
        if let Some(n) = self.number_of.get(&w) {
            return *n;
        }
        let entry = Some(Watcher { id: w, watches: HashSet::new() });
        let n = match self.free_numbers.pop() {
            Some(n) => {
                self.watchers[n as usize] = entry;
                n
            }
            None => {
                self.watchers.push(entry);
                u32::try_from(self.watchers.len() - 1).expect("fewer than 2^32 watchers")
            }
        };
        self.number_of.insert(w, n);
        n
    }

    /// Forgets watcher number `n` if it has no watch left.
    fn release_number(&mut self, n: u32) {
        let empty = self.watchers[n as usize].as_ref().is_some_and(|w| w.watches.is_empty());
        if empty {
            if let Some(w) = self.watchers[n as usize].take() {
                self.number_of.remove(&w.id);
                self.free_numbers.push(n);
            }
        }
    }

    fn watcher_mut(&mut self, n: u32) -> &mut Watcher {
        self.watchers[n as usize].as_mut().expect("a live watcher number")
    }

    fn add(&mut self, path: &str, kind: Kind, w: WatcherId) {
        let s = self.slot_or_new(path);
        let n = self.number_or_new(w);
        if self.slots[s as usize].sets[kind as usize].insert(n) {
            self.watcher_mut(n).watches.insert(pack(s, kind));
            self.count += 1;
        }
    }

    fn remove(&mut self, path: &str, kind: Kind, w: WatcherId) -> bool {
        let (Some(s), Some(&n)) = (self.slot(path), self.number_of.get(&w)) else { return false };
        let removed = self.slots[s as usize].sets[kind as usize].remove(&n);
        if removed {
            self.watcher_mut(n).watches.remove(&pack(s, kind));
            self.count -= 1;
            self.release_slot(s);
            self.release_number(n);
        }
        removed
    }

    fn has(&self, path: &str, kind: Kind, w: WatcherId) -> bool {
        match (self.slot(path), self.number_of.get(&w)) {
            (Some(s), Some(n)) => self.slots[s as usize].sets[kind as usize].contains(n),
            _ => false,
        }
    }

    /// A one-shot data watch (getData, exists — also on a missing node).
    pub fn add_data_watch(&mut self, path: &str, w: WatcherId) {
        self.add(path, Kind::Data, w);
    }

    /// A one-shot child watch (getChildren).
    pub fn add_child_watch(&mut self, path: &str, w: WatcherId) {
        self.add(path, Kind::Child, w);
    }

    /// addWatch.
    pub fn add_persistent(&mut self, path: &str, mode: AddWatchMode, w: WatcherId) {
        match mode {
            AddWatchMode::Persistent => self.add(path, Kind::Persistent, w),
            AddWatchMode::PersistentRecursive => self.add(path, Kind::Recursive, w),
        }
    }

    /// Forgets every watch of a connection (it closed).
    pub fn remove_watcher(&mut self, w: WatcherId) {
        let Some(n) = self.number_of.remove(&w) else { return };
        let Some(watcher) = self.watchers[n as usize].take() else { return };
        self.free_numbers.push(n);
        for p in watcher.watches {
            let (s, kind) = unpack(p);
            if self.slots[s as usize].sets[kind as usize].remove(&n) {
                self.count -= 1;
            }
            self.release_slot(s);
        }
    }

    fn kinds_for(wtype: WatcherType) -> &'static [Kind] {
        match wtype {
            WatcherType::Children => &[Kind::Child],
            WatcherType::Data => &[Kind::Data],
            WatcherType::Any => &[Kind::Data, Kind::Child, Kind::Persistent, Kind::Recursive],
            WatcherType::Persistent => &[Kind::Persistent],
            WatcherType::PersistentRecursive => &[Kind::Recursive],
        }
    }

    /// checkWatches: does the connection hold a watch of this type on the path?
    pub fn contains(&self, path: &str, wtype: WatcherType, w: WatcherId) -> bool {
        Self::kinds_for(wtype).iter().any(|k| self.has(path, *k, w))
    }

    /// removeWatches: removes the connection's watches of this type on the path; false if
    /// there were none (NOWATCHER).
    pub fn remove_watches(&mut self, path: &str, wtype: WatcherType, w: WatcherId) -> bool {
        let mut any = false;
        for k in Self::kinds_for(wtype) {
            any |= self.remove(path, *k, w);
        }
        any
    }

    /// Takes every watcher of a one-shot kind off a slot.
    fn fire_one_shot(&mut self, s: u32, kind: Kind, who: &mut Vec<u32>) {
        let set = std::mem::take(&mut self.slots[s as usize].sets[kind as usize]);
        self.count -= set.len();
        for n in set {
            self.watcher_mut(n).watches.remove(&pack(s, kind));
            who.push(n);
        }
    }

    /// The notifications a change causes, removing the one-shot watches that fire. Each
    /// connection appears at most once, in the order of their ids. Costs nothing when no one
    /// watches the path or, for creates, deletes and data changes, any ancestor recursively.
    pub fn trigger(&mut self, path: &str, event: EventType) -> Vec<Notification> {
        if self.count == 0 {
            return Vec::new();
        }
        let data = matches!(
            event,
            EventType::NodeCreated | EventType::NodeDeleted | EventType::NodeDataChanged
        );
        let child = matches!(event, EventType::NodeChildrenChanged | EventType::NodeDeleted);
        let mut who: Vec<u32> = Vec::new();
        let here = self.slot(path);
        if let Some(s) = here {
            if data {
                self.fire_one_shot(s, Kind::Data, &mut who);
            }
            if child {
                self.fire_one_shot(s, Kind::Child, &mut who);
            }
            if data || child {
                who.extend(self.slots[s as usize].sets[Kind::Persistent as usize].iter().copied());
            }
        }
        if data {
            // Recursive watches on the path and every ancestor.
            let mut p = path;
            loop {
                if let Some(s) = self.slot(p) {
                    who.extend(self.slots[s as usize].sets[Kind::Recursive as usize].iter());
                }
                if p == "/" {
                    break;
                }
                p = match p.rfind('/') {
                    Some(0) => "/",
                    Some(i) => &p[..i],
                    None => break,
                };
            }
        }
        let mut ids: Vec<WatcherId> =
            who.iter().filter_map(|n| self.watchers[*n as usize].as_ref().map(|w| w.id)).collect();
        if let Some(s) = here {
            self.release_slot(s);
        }
        for n in who {
            self.release_number(n);
        }
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|watcher| Notification { watcher, event, path: path.to_owned() })
            .collect()
    }

    /// Number of watches (path, connection, kind) in all tables.
    pub fn watch_count(&self) -> usize {
        self.count
    }

    /// Number of distinct watched paths.
    pub fn path_count(&self) -> usize {
        self.slot_of.len()
    }

    /// Number of connections with at least one watch.
    pub fn watcher_count(&self) -> usize {
        self.number_of.len()
    }

    /// Paths watched by each connection (wchc), sorted.
    pub fn by_connection(&self) -> BTreeMap<WatcherId, BTreeSet<String>> {
        self.watchers
            .iter()
            .flatten()
            .map(|w| {
                let paths = w
                    .watches
                    .iter()
                    .filter_map(|p| self.slots[unpack(*p).0 as usize].path.as_deref())
                    .map(str::to_owned)
                    .collect();
                (w.id, paths)
            })
            .collect()
    }

    /// Connections watching each path (wchp), sorted.
    pub fn by_path(&self) -> BTreeMap<String, BTreeSet<WatcherId>> {
        let mut out: BTreeMap<String, BTreeSet<WatcherId>> = BTreeMap::new();
        for slot in &self.slots {
            let Some(p) = &slot.path else { continue };
            let ids: BTreeSet<WatcherId> = slot
                .sets
                .iter()
                .flatten()
                .filter_map(|n| self.watchers[*n as usize].as_ref().map(|w| w.id))
                .collect();
            if !ids.is_empty() {
                out.insert(p.to_string(), ids);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: &[Notification]) -> Vec<(WatcherId, EventType, &str)> {
        n.iter().map(|x| (x.watcher, x.event, x.path.as_str())).collect()
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut m = WatchManager::new();
        m.add_data_watch("/a", 1);
        m.add_data_watch("/a", 2);
        m.add_child_watch("/a", 1);
        assert_eq!(m.watch_count(), 3);
        let n = m.trigger("/a", EventType::NodeDataChanged);
        assert_eq!(
            events(&n),
            vec![(1, EventType::NodeDataChanged, "/a"), (2, EventType::NodeDataChanged, "/a")]
        );
        assert!(m.trigger("/a", EventType::NodeDataChanged).is_empty(), "fired once");
        // The child watch is still there; NodeDeleted consults both tables.
        let n = m.trigger("/a", EventType::NodeDeleted);
        assert_eq!(events(&n), vec![(1, EventType::NodeDeleted, "/a")]);
        assert_eq!(m.watch_count(), 0);
        assert_eq!(m.watcher_count(), 0);
    }

    #[test]
    fn children_changed_uses_only_the_child_table() {
        let mut m = WatchManager::new();
        m.add_data_watch("/p", 1);
        m.add_child_watch("/p", 2);
        let n = m.trigger("/p", EventType::NodeChildrenChanged);
        assert_eq!(events(&n), vec![(2, EventType::NodeChildrenChanged, "/p")]);
        assert!(m.contains("/p", WatcherType::Data, 1));
    }

    #[test]
    fn persistent_and_recursive() {
        let mut m = WatchManager::new();
        m.add_persistent("/a", AddWatchMode::Persistent, 1);
        m.add_persistent("/a", AddWatchMode::PersistentRecursive, 2);
        m.add_persistent("/", AddWatchMode::PersistentRecursive, 3);
        m.add_data_watch("/a", 1);
        // Persistent sees data and child events of its path; one event per connection.
        assert_eq!(
            events(&m.trigger("/a", EventType::NodeDataChanged)),
            vec![
                (1, EventType::NodeDataChanged, "/a"),
                (2, EventType::NodeDataChanged, "/a"),
                (3, EventType::NodeDataChanged, "/a")
            ]
        );
        assert_eq!(
            events(&m.trigger("/a", EventType::NodeChildrenChanged)),
            vec![(1, EventType::NodeChildrenChanged, "/a")]
        );
        // Recursive sees descendants' create/delete/data, never children-changed.
        assert_eq!(
            events(&m.trigger("/a/b/c", EventType::NodeCreated)),
            vec![(2, EventType::NodeCreated, "/a/b/c"), (3, EventType::NodeCreated, "/a/b/c")]
        );
        assert!(m.trigger("/a/b", EventType::NodeChildrenChanged).is_empty());
        assert_eq!(
            events(&m.trigger("/ab", EventType::NodeCreated)),
            vec![(3, EventType::NodeCreated, "/ab")],
            "/ab is not under /a"
        );
        // They stay until removed.
        assert_eq!(m.trigger("/a", EventType::NodeDataChanged).len(), 3);
        assert!(m.remove_watches("/a", WatcherType::PersistentRecursive, 2));
        assert!(!m.remove_watches("/a", WatcherType::PersistentRecursive, 2), "NOWATCHER");
        m.remove_watcher(3);
        assert_eq!(events(&m.trigger("/a/x", EventType::NodeDeleted)), vec![]);
        assert_eq!(m.watch_count(), 1);
    }

    /// Random operations on both implementations: the same notifications, answers and
    /// summaries every step.
    #[test]
    fn matches_the_reference_model() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let paths = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/x", "/x/y"];
        let events = [
            EventType::NodeCreated,
            EventType::NodeDeleted,
            EventType::NodeDataChanged,
            EventType::NodeChildrenChanged,
        ];
        let wtypes = [
            WatcherType::Children,
            WatcherType::Data,
            WatcherType::Any,
            WatcherType::Persistent,
            WatcherType::PersistentRecursive,
        ];
        let op = (0u8..8, 0..paths.len(), 1u64..6, 0usize..5);
        let mut runner = TestRunner::new(Config { cases: 300, ..Config::default() });
        runner
            .run(&proptest::collection::vec(op, 1..200), |ops| {
                let mut m = WatchManager::new();
                let mut r = reference::Reference::new();
                for (code, pi, w, k) in ops {
                    let path = paths[pi];
                    match code {
                        0 => {
                            m.add_data_watch(path, w);
                            r.add_data_watch(path, w);
                        }
                        1 => {
                            m.add_child_watch(path, w);
                            r.add_child_watch(path, w);
                        }
                        2 => {
                            let mode = if k % 2 == 0 {
                                AddWatchMode::Persistent
                            } else {
                                AddWatchMode::PersistentRecursive
                            };
                            m.add_persistent(path, mode, w);
                            r.add_persistent(path, mode, w);
                        }
                        3 => {
                            m.remove_watcher(w);
                            r.remove_watcher(w);
                        }
                        4 => prop_assert_eq!(
                            m.remove_watches(path, wtypes[k], w),
                            r.remove_watches(path, wtypes[k], w)
                        ),
                        5 => prop_assert_eq!(
                            m.contains(path, wtypes[k], w),
                            r.contains(path, wtypes[k], w)
                        ),
                        _ => {
                            let e = events[k % 4];
                            prop_assert_eq!(m.trigger(path, e), r.trigger(path, e));
                        }
                    }
                    prop_assert_eq!(m.watch_count(), r.watch_count());
                    prop_assert_eq!(m.path_count(), r.path_count());
                    prop_assert_eq!(m.watcher_count(), r.watcher_count());
                    prop_assert_eq!(m.by_connection(), r.by_connection());
                    prop_assert_eq!(m.by_path(), r.by_path());
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn remove_and_summaries() {
        let mut m = WatchManager::new();
        m.add_data_watch("/x", 7);
        m.add_child_watch("/y", 7);
        m.add_data_watch("/y", 8);
        assert_eq!((m.watch_count(), m.path_count(), m.watcher_count()), (3, 2, 2));
        assert_eq!(m.by_path().get("/y").map(|s| s.len()), Some(2));
        assert!(m.remove_watches("/y", WatcherType::Any, 7));
        assert!(!m.contains("/y", WatcherType::Children, 7));
        m.remove_watcher(8);
        assert_eq!(m.watch_count(), 1);
    }
}

/// The first implementation (one table of path strings per kind, each watcher's paths copied
/// again), kept as the model the compact one is checked against.
#[cfg(test)]
mod reference {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    enum Kind {
        Data,
        Child,
        Persistent,
        Recursive,
    }

    /// The watches of every connection.
    #[derive(Debug, Default)]
    pub struct Reference {
        data: HashMap<String, HashSet<WatcherId>>,
        child: HashMap<String, HashSet<WatcherId>>,
        persistent: HashMap<String, HashSet<WatcherId>>,
        recursive: HashMap<String, HashSet<WatcherId>>,
        by_watcher: HashMap<WatcherId, BTreeSet<(String, Kind)>>,
    }

    impl Reference {
        /// An empty manager.
        pub fn new() -> Self {
            Self::default()
        }

        fn table(&mut self, kind: Kind) -> &mut HashMap<String, HashSet<WatcherId>> {
            match kind {
                Kind::Data => &mut self.data,
                Kind::Child => &mut self.child,
                Kind::Persistent => &mut self.persistent,
                Kind::Recursive => &mut self.recursive,
            }
        }

        fn add(&mut self, path: &str, kind: Kind, w: WatcherId) {
            if self.table(kind).entry(path.to_owned()).or_default().insert(w) {
                self.by_watcher.entry(w).or_default().insert((path.to_owned(), kind));
            }
        }

        fn remove(&mut self, path: &str, kind: Kind, w: WatcherId) -> bool {
            let t = self.table(kind);
            let Some(set) = t.get_mut(path) else { return false };
            let removed = set.remove(&w);
            if set.is_empty() {
                t.remove(path);
            }
            if removed {
                if let Some(paths) = self.by_watcher.get_mut(&w) {
                    paths.remove(&(path.to_owned(), kind));
                    if paths.is_empty() {
                        self.by_watcher.remove(&w);
                    }
                }
            }
            removed
        }

        fn has(&self, path: &str, kind: Kind, w: WatcherId) -> bool {
            let t = match kind {
                Kind::Data => &self.data,
                Kind::Child => &self.child,
                Kind::Persistent => &self.persistent,
                Kind::Recursive => &self.recursive,
            };
            t.get(path).is_some_and(|s| s.contains(&w))
        }

        /// A one-shot data watch (getData, exists — also on a missing node).
        pub fn add_data_watch(&mut self, path: &str, w: WatcherId) {
            self.add(path, Kind::Data, w);
        }

        /// A one-shot child watch (getChildren).
        pub fn add_child_watch(&mut self, path: &str, w: WatcherId) {
            self.add(path, Kind::Child, w);
        }

        /// addWatch.
        pub fn add_persistent(&mut self, path: &str, mode: AddWatchMode, w: WatcherId) {
            match mode {
                AddWatchMode::Persistent => self.add(path, Kind::Persistent, w),
                AddWatchMode::PersistentRecursive => self.add(path, Kind::Recursive, w),
            }
        }

        /// Forgets every watch of a connection (it closed).
        pub fn remove_watcher(&mut self, w: WatcherId) {
            if let Some(paths) = self.by_watcher.remove(&w) {
                for (path, kind) in paths {
                    let t = self.table(kind);
                    if let Some(set) = t.get_mut(&path) {
                        set.remove(&w);
                        if set.is_empty() {
                            t.remove(&path);
                        }
                    }
                }
            }
        }

        fn kinds_for(wtype: WatcherType) -> &'static [Kind] {
            match wtype {
                WatcherType::Children => &[Kind::Child],
                WatcherType::Data => &[Kind::Data],
                WatcherType::Any => &[Kind::Data, Kind::Child, Kind::Persistent, Kind::Recursive],
                WatcherType::Persistent => &[Kind::Persistent],
                WatcherType::PersistentRecursive => &[Kind::Recursive],
            }
        }

        /// checkWatches: does the connection hold a watch of this type on the path?
        pub fn contains(&self, path: &str, wtype: WatcherType, w: WatcherId) -> bool {
            Self::kinds_for(wtype).iter().any(|k| self.has(path, *k, w))
        }

        /// removeWatches: removes the connection's watches of this type on the path; false if
        /// there were none (NOWATCHER).
        pub fn remove_watches(&mut self, path: &str, wtype: WatcherType, w: WatcherId) -> bool {
            let mut any = false;
            for k in Self::kinds_for(wtype) {
                any |= self.remove(path, *k, w);
            }
            any
        }

        /// The notifications a change causes, removing the one-shot watches that fire. Each
        /// connection appears at most once.
        pub fn trigger(&mut self, path: &str, event: EventType) -> Vec<Notification> {
            let mut who: BTreeSet<WatcherId> = BTreeSet::new();
            let data = matches!(
                event,
                EventType::NodeCreated | EventType::NodeDeleted | EventType::NodeDataChanged
            );
            let child = matches!(event, EventType::NodeChildrenChanged | EventType::NodeDeleted);
            if data {
                if let Some(set) = self.data.remove(path) {
                    for w in &set {
                        if let Some(p) = self.by_watcher.get_mut(w) {
                            p.remove(&(path.to_owned(), Kind::Data));
                        }
                    }
                    who.extend(set);
                }
                // Recursive watches on the path and every ancestor.
                let mut p = path;
                loop {
                    if let Some(set) = self.recursive.get(p) {
                        who.extend(set.iter().copied());
                    }
                    if p == "/" {
                        break;
                    }
                    p = match p.rfind('/') {
                        Some(0) => "/",
                        Some(i) => &p[..i],
                        None => break,
                    };
                }
            }
            if child {
                if let Some(set) = self.child.remove(path) {
                    for w in &set {
                        if let Some(p) = self.by_watcher.get_mut(w) {
                            p.remove(&(path.to_owned(), Kind::Child));
                        }
                    }
                    who.extend(set);
                }
            }
            if data || child {
                if let Some(set) = self.persistent.get(path) {
                    who.extend(set.iter().copied());
                }
            }
            self.by_watcher.retain(|_, p| !p.is_empty());
            who.into_iter()
                .map(|watcher| Notification { watcher, event, path: path.to_owned() })
                .collect()
        }

        /// Number of watches (path, connection, kind) in all tables.
        pub fn watch_count(&self) -> usize {
            self.by_watcher.values().map(BTreeSet::len).sum()
        }

        /// Number of distinct watched paths.
        pub fn path_count(&self) -> usize {
            let mut paths: HashSet<&str> = HashSet::new();
            for t in [&self.data, &self.child, &self.persistent, &self.recursive] {
                paths.extend(t.keys().map(String::as_str));
            }
            paths.len()
        }

        /// Number of connections with at least one watch.
        pub fn watcher_count(&self) -> usize {
            self.by_watcher.len()
        }

        /// Paths watched by each connection (wchc), sorted.
        pub fn by_connection(&self) -> BTreeMap<WatcherId, BTreeSet<String>> {
            self.by_watcher
                .iter()
                .map(|(w, p)| (*w, p.iter().map(|(path, _)| path.clone()).collect()))
                .collect()
        }

        /// Connections watching each path (wchp), sorted.
        pub fn by_path(&self) -> BTreeMap<String, BTreeSet<WatcherId>> {
            let mut out: BTreeMap<String, BTreeSet<WatcherId>> = BTreeMap::new();
            for (w, paths) in &self.by_watcher {
                for (p, _) in paths {
                    out.entry(p.clone()).or_default().insert(*w);
                }
            }
            out
        }
    }
}
