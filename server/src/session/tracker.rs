//! The session tracker: which global sessions exist, when each expires, in ticks — one table,
//! kept by whichever server sequences (the ensemble's leader, or a standalone server, which
//! leads an ensemble of one). ZooKeeper's `SessionTrackerImpl` without its expiry buckets:
//! a session touched during tick `t` (at a time between ticks `t` and `t + 1`) with a timeout
//! of `n` ticks expires at tick `t + n + 1`, the first tick after its timeout, so it lives
//! longer than its timeout and at most one tick more — ZooKeeper's `roundToNextInterval`.
//! (Expiring at tick `t + n` let a session touched late in tick `t` die up to a tick before
//! its timeout: 2.1 s into a 4 s timeout, found by `corral-bench compare --workloads x`.)
//!
//! It learns of sessions from committed txns (createSession, closeSession), is touched by the
//! server's own clients and, through PING replies, by the learners', answers REVALIDATE, and
//! says which sessions expired; their closeSession txns are the sequencer's to propose. A
//! session stays "closing" from its expiry until its closeSession commits, so it is reported
//! once.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    timeout_ticks: u64,
    expires: u64,
    closing: bool,
}

/// Global sessions and their deadlines, in ticks of `tick_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTracker {
    tick_ms: u32,
    sessions: BTreeMap<i64, Tracked>,
}

impl SessionTracker {
    /// An empty table counting in ticks of `tick_ms` (tickTime).
    pub fn new(tick_ms: u32) -> Self {
        SessionTracker { tick_ms: tick_ms.max(1), sessions: BTreeMap::new() }
    }

    /// A timeout in ticks, rounded up (at least one).
    pub fn ticks(&self, timeout_ms: i32) -> u64 {
        u64::try_from(timeout_ms).unwrap_or(0).div_ceil(u64::from(self.tick_ms)).max(1)
    }

    /// A session was created (its createSession committed), or is tracked afresh by a new
    /// leader: it has its whole timeout from `now`.
    pub fn add(&mut self, session_id: i64, timeout_ms: i32, now: u64) {
        let t = self.ticks(timeout_ms);
        self.sessions
            .insert(session_id, Tracked { timeout_ticks: t, expires: now + t + 1, closing: false });
    }

    /// The session closed (its closeSession committed).
    pub fn remove(&mut self, session_id: i64) {
        self.sessions.remove(&session_id);
    }

    /// The session's client was heard from at tick `now`; false if it is unknown or closing
    /// (SessionTrackerImpl.touchSession). A REVALIDATE answered true for a closing session let
    /// a client resume a session whose closeSession was already proposed: it then kept a
    /// connection whose every write failed SESSIONEXPIRED, its ephemerals gone — found by the
    /// simulator with the leader applying the close a little after its commit.
    pub fn touch(&mut self, session_id: i64, now: u64) -> bool {
        match self.sessions.get_mut(&session_id) {
            Some(s) if !s.closing => {
                s.expires = now + s.timeout_ticks + 1;
                true
            }
            _ => false,
        }
    }

    /// True if the session exists (REVALIDATE's answer). A session expiring but not yet closed
    /// still exists, as in ZooKeeper until its closeSession is applied.
    pub fn contains(&self, session_id: i64) -> bool {
        self.sessions.contains_key(&session_id)
    }

    /// Sessions tracked.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is tracked.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The sessions whose deadline has come at tick `now` and that were not reported before;
    /// they are closing from now on.
    pub fn expire(&mut self, now: u64) -> Vec<i64> {
        let mut out = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if !s.closing && s.expires <= now {
                s.closing = true;
                out.push(*id);
            }
        }
        out
    }
}

/// Sessions a learner's clients were heard from since its last PING reply (id → timeout),
/// passed on to the leader's tracker in that reply, as ZooKeeper's learners do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touches(BTreeMap<i64, i32>);

impl Touches {
    /// Records a touch.
    pub fn touch(&mut self, session_id: i64, timeout_ms: i32) {
        self.0.insert(session_id, timeout_ms);
    }

    /// Everything recorded, emptying the set.
    pub fn take(&mut self) -> Vec<(i64, i32)> {
        std::mem::take(&mut self.0).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_between_its_timeout_and_one_tick_more() {
        let mut t = SessionTracker::new(2_000);
        assert_eq!(t.ticks(4_000), 2);
        assert_eq!(t.ticks(4_001), 3, "rounded up");
        assert_eq!(t.ticks(0), 1, "at least a tick");
        // Added during tick 10 (between 20 s and 22 s): alive at tick 12 (24 s, less than
        // 4 s after an add at 21.9 s), gone at tick 13 (26 s: more than 4 s, less than 6 s).
        t.add(7, 4_000, 10);
        assert!(t.expire(11).is_empty());
        assert!(t.expire(12).is_empty(), "never before its timeout");
        assert_eq!(t.expire(13), vec![7]);
        assert!(t.expire(14).is_empty(), "reported once");
        assert!(t.contains(7), "still there until its closeSession commits");
        assert!(!t.touch(7, 14), "a closing session is not revived (nor revalidated)");
        assert!(t.expire(40).is_empty(), "nor reported again");
        t.remove(7);
        assert!(!t.contains(7) && t.is_empty());
    }

    #[test]
    fn touches_push_the_deadline_and_unknown_sessions_are_refused() {
        let mut t = SessionTracker::new(1_000);
        t.add(1, 3_000, 0);
        t.add(2, 3_000, 0);
        assert!(t.touch(1, 2));
        assert!(!t.touch(99, 2), "unknown");
        assert!(t.expire(3).is_empty());
        assert_eq!(t.expire(4), vec![2]);
        assert!(t.expire(5).is_empty());
        assert_eq!(t.expire(6), vec![1]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn touches_are_taken_once() {
        let mut s = Touches::default();
        s.touch(5, 100);
        s.touch(5, 200);
        s.touch(3, 50);
        assert_eq!(s.take(), vec![(3, 50), (5, 200)]);
        assert!(s.take().is_empty());
    }
}
