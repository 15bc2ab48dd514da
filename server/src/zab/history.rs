//! The tail of a peer's history kept in memory (ZooKeeper's committedLog), and the leader's
//! choice of how to bring a learner up to date (LearnerHandler.syncFollower).

use std::collections::VecDeque;

use bytes::Bytes;

use super::Zxid;

/// The last `capacity` txns of a peer's history, and the zxid just before them (`base`: the
/// snapshot zxid, the last txn that fell out of the window, or 0). Everything in
/// `(base, last]` is known exactly, so a learner whose last zxid is in that range can be sent
/// a DIFF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryWindow {
    base: Zxid,
    entries: VecDeque<(Zxid, Bytes)>,
    capacity: usize,
}

impl HistoryWindow {
    /// An empty window starting after `base`.
    pub fn new(base: Zxid, capacity: usize) -> Self {
        HistoryWindow { base, entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// The zxid before the first entry (minCommittedLog's predecessor).
    pub fn base(&self) -> Zxid {
        self.base
    }

    /// The last zxid of the history.
    pub fn last(&self) -> Zxid {
        self.entries.back().map_or(self.base, |e| e.0)
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &(Zxid, Bytes)> + '_ {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The payload of `zxid`, if in the window.
    pub fn get(&self, zxid: Zxid) -> Option<&Bytes> {
        let i = self.entries.binary_search_by_key(&zxid, |e| e.0).ok()?;
        Some(&self.entries[i].1)
    }

    /// Appends a txn (zxids must increase); the oldest entry falls out when full.
    pub fn push(&mut self, zxid: Zxid, data: Bytes) {
        assert!(
            zxid > self.last(),
            "history zxids must increase: {zxid:#x} after {:#x}",
            self.last()
        );
        self.entries.push_back((zxid, data));
        while self.entries.len() > self.capacity {
            let (z, _) = self.entries.pop_front().expect("non-empty");
            self.base = z;
        }
    }

    /// Drops everything after `zxid` (TRUNC). Truncating below the base empties the window and
    /// moves the base down: the history is then known only up to `zxid`.
    pub fn truncate_after(&mut self, zxid: Zxid) {
        while self.entries.back().is_some_and(|e| e.0 > zxid) {
            self.entries.pop_back();
        }
        if zxid < self.base {
            self.base = zxid;
        }
    }

    /// Replaces the history by a snapshot at `zxid`.
    pub fn reset(&mut self, zxid: Zxid) {
        self.entries.clear();
        self.base = zxid;
    }

    /// True if `zxid` is a point of this history the window can DIFF from: the base or an
    /// entry.
    pub fn contains_point(&self, zxid: Zxid) -> bool {
        zxid == self.base || self.entries.binary_search_by_key(&zxid, |e| e.0).is_ok()
    }
}

/// How the leader brings a learner to its sync point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncPlan {
    /// DIFF: the learner's last zxid is in the leader's history; send the txns after it
    /// (possibly none).
    Diff {
        /// The learner's last zxid; the txns after it are sent.
        from: Zxid,
    },
    /// TRUNC then DIFF: the learner has txns the leader never had; it truncates to `to` (the
    /// leader's last zxid below the learner's), then receives the txns after it.
    TruncDiff {
        /// The truncation point.
        to: Zxid,
    },
    /// TRUNC alone: the learner is ahead of the leader's sync point.
    Trunc {
        /// The truncation point (the leader's sync point).
        to: Zxid,
    },
    /// SNAP: the learner is too far behind the window; send the whole state.
    Snap,
}

impl SyncPlan {
    /// A short name for counters: DIFF, TRUNC+DIFF, TRUNC, SNAP.
    pub fn name(&self) -> &'static str {
        match self {
            SyncPlan::Diff { .. } => "DIFF",
            SyncPlan::TruncDiff { .. } => "TRUNC+DIFF",
            SyncPlan::Trunc { .. } => "TRUNC",
            SyncPlan::Snap => "SNAP",
        }
    }
}

/// Chooses the sync for a learner whose last zxid is `peer_last`, given the leader's history
/// window and its sync point `sync_point` (the last zxid the learner must end with; entries
/// of the window after it are outstanding proposals and are not used).
///
/// As ZooKeeper's LearnerHandler: equal → empty DIFF; learner ahead → TRUNC to the sync point;
/// learner inside the window → DIFF if its last zxid is in the leader's history, otherwise TRUNC
/// to the leader's previous zxid then DIFF, unless the leader's next txn is of another epoch
/// than the learner's last (ZooKeeper does not send a TRUNC across an epoch boundary: SNAP);
/// learner before the window → SNAP.
pub fn plan_sync(peer_last: Zxid, sync_point: Zxid, window: &HistoryWindow) -> SyncPlan {
    // The sync point may lie below the window when outstanding proposals filled it.
    assert!(sync_point <= window.last(), "sync point beyond the history");
    if peer_last == sync_point {
        return SyncPlan::Diff { from: peer_last };
    }
    if peer_last > sync_point {
        return SyncPlan::Trunc { to: sync_point };
    }
    if peer_last < window.base() {
        return SyncPlan::Snap;
    }
    if sync_point < window.base() {
        return SyncPlan::Snap;
    }
    if window.contains_point(peer_last) {
        return SyncPlan::Diff { from: peer_last };
    }
    let next = window.entries().map(|e| e.0).find(|z| *z > peer_last);
    if next.is_some_and(|n| super::epoch_of(n) != super::epoch_of(peer_last)) {
        return SyncPlan::Snap;
    }
    let prev =
        window.entries().rev().map(|e| e.0).find(|z| *z < peer_last).unwrap_or(window.base());
    SyncPlan::TruncDiff { to: prev }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zab::make_zxid;

    fn window(base: Zxid, zxids: &[Zxid]) -> HistoryWindow {
        let mut w = HistoryWindow::new(base, 100);
        for z in zxids {
            w.push(*z, Bytes::new());
        }
        w
    }

    #[test]
    fn window_keeps_capacity_and_moves_base() {
        let mut w = HistoryWindow::new(Zxid::ZERO, 2);
        for c in 1..=4 {
            w.push(make_zxid(1, c), Bytes::new());
        }
        assert_eq!((w.base(), w.last(), w.len()), (make_zxid(1, 2), make_zxid(1, 4), 2));
        w.truncate_after(make_zxid(1, 3));
        assert_eq!(w.last(), make_zxid(1, 3));
        w.truncate_after(make_zxid(1, 1));
        assert_eq!((w.base(), w.last(), w.len()), (make_zxid(1, 1), make_zxid(1, 1), 0));
    }

    // LearnerHandler.syncFollower, case "peerLastZxid == leaderLastZxid": empty DIFF.
    #[test]
    fn equal_is_empty_diff() {
        let w = window(Zxid::ZERO, &[make_zxid(1, 1), make_zxid(1, 2)]);
        assert_eq!(
            plan_sync(make_zxid(1, 2), make_zxid(1, 2), &w),
            SyncPlan::Diff { from: make_zxid(1, 2) }
        );
    }

    // Case "peerLastZxid > maxCommittedLog": TRUNC alone.
    #[test]
    fn ahead_is_trunc() {
        let w = window(Zxid::ZERO, &[make_zxid(1, 1), make_zxid(1, 2)]);
        assert_eq!(
            plan_sync(make_zxid(1, 3), make_zxid(1, 2), &w),
            SyncPlan::Trunc { to: make_zxid(1, 2) }
        );
        // Outstanding proposals beyond the sync point do not count as history to DIFF from.
        assert_eq!(
            plan_sync(make_zxid(1, 2), make_zxid(1, 1), &w),
            SyncPlan::Trunc { to: make_zxid(1, 1) }
        );
    }

    // Case "minCommittedLog <= peerLastZxid <= maxCommittedLog": DIFF, or TRUNC+DIFF when the
    // learner's last zxid is not in the leader's history.
    #[test]
    fn inside_window() {
        let w = window(make_zxid(1, 1), &[make_zxid(1, 2), make_zxid(1, 3), make_zxid(3, 1)]);
        assert_eq!(
            plan_sync(make_zxid(1, 2), make_zxid(3, 1), &w),
            SyncPlan::Diff { from: make_zxid(1, 2) }
        );
        assert_eq!(
            plan_sync(make_zxid(1, 1), make_zxid(3, 1), &w),
            SyncPlan::Diff { from: make_zxid(1, 1) }
        );
        // The learner has 2.1, which the leader never had, and the leader's next txn is of
        // epoch 3: ZooKeeper sends no TRUNC across an epoch boundary, a SNAP.
        assert_eq!(plan_sync(make_zxid(2, 1), make_zxid(3, 1), &w), SyncPlan::Snap);
        // The learner has 3.2 (not the leader's) and the leader's next is 3.3: back to 3.1,
        // then DIFF.
        let w = window(make_zxid(1, 1), &[make_zxid(3, 1), make_zxid(3, 3)]);
        assert_eq!(
            plan_sync(make_zxid(3, 2), make_zxid(3, 3), &w),
            SyncPlan::TruncDiff { to: make_zxid(3, 1) }
        );
    }

    // Case "peerLastZxid < minCommittedLog": SNAP.
    #[test]
    fn behind_window_is_snap() {
        let w = window(make_zxid(1, 5), &[make_zxid(1, 6)]);
        assert_eq!(plan_sync(make_zxid(1, 4), make_zxid(1, 6), &w), SyncPlan::Snap);
        assert_eq!(plan_sync(Zxid::ZERO, make_zxid(1, 6), &w), SyncPlan::Snap);
    }
}
