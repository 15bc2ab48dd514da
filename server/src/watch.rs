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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::proto::{AddWatchMode, EventType, WatcherType};

/// Identifies a watcher: the server's id of a client connection.
pub type WatcherId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Data,
    Child,
    Persistent,
    Recursive,
}

/// The watches of every connection.
#[derive(Debug, Default)]
pub struct WatchManager {
    data: HashMap<String, HashSet<WatcherId>>,
    child: HashMap<String, HashSet<WatcherId>>,
    persistent: HashMap<String, HashSet<WatcherId>>,
    recursive: HashMap<String, HashSet<WatcherId>>,
    by_watcher: HashMap<WatcherId, BTreeSet<(String, Kind)>>,
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
