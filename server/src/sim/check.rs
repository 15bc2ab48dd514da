//! The simulator's safety checks, fed as the simulation runs (every check happens at the step
//! that could break it).
//!
//! * Leadership: at most one peer establishes itself as leader of an epoch.
//! * Commit order and content: the first time a txn is known committed (an established leader
//!   commits it) its content hash, its predecessor in the history and the tree digest after it
//!   are recorded; every replica that commits or holds that zxid later must agree on all three
//!   (so committed txns are never reordered, and trees are identical at equal zxids).
//! * No loss: whenever a replica's history changes other than by appending (TRUNC, SNAP,
//!   recovery after a crash), every committed zxid in the range it covers must still be there.
//! * Leader completeness: a newly established leader holds every txn committed so far, up to
//!   the highest committed zxid (not only up to its own last entry).
//! * Commit order: a newly recorded commit follows the previous committed zxid; a learner
//!   never commits a txn no leader committed.
//! * Durable acks: a replica acknowledges a proposal only once the txn is durable on its disk,
//!   and its highest acknowledged zxid survives its crash and recovery (only TRUNC or SNAP may
//!   drop an acknowledged txn, which then was never committed); a leader commits a txn only
//!   once it is durable on a quorum of voters (its own ack counts only once its log holds it).
//! * Client writes: every write acknowledged to a client is in the final state, and every
//!   replica ends holding every committed txn.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::zab::{Sid, Zxid};

/// A content hash of a txn.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

#[derive(Debug, Clone, Copy)]
struct Committed {
    hash: u64,
    prev: Zxid,
    digest: Option<i64>,
}

/// The recorded truth and the violations found.
#[derive(Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<u32, Sid>,
    committed: BTreeMap<Zxid, Committed>,
    /// Every zxid up to here is committed (a snapshot point of an established leader).
    covered: Zxid,
    /// Digests of committed states that are only snapshot points (no txn recorded there).
    pub violations: Vec<String>,
    /// Writes acknowledged to clients: (path, zxid).
    pub acked: Vec<(String, Zxid)>,
    /// Per replica: the highest zxid it acknowledged (ACK of a proposal, or of NEWLEADER for
    /// its synced history) since its history was last cut.
    acked_by: BTreeMap<Sid, Zxid>,
}

impl Checker {
    fn violation(&mut self, at_ms: u64, msg: String) {
        if self.violations.len() < 20 {
            self.violations.push(format!("t={at_ms}ms: {msg}"));
        }
    }

    /// A leader established `epoch`.
    pub fn established(&mut self, at_ms: u64, epoch: u32, sid: Sid) {
        if let Some(&other) = self.leaders.get(&epoch) {
            if other != sid {
                self.violation(
                    at_ms,
                    format!("two leaders established in epoch {epoch}: {other} and {sid}"),
                );
            }
        } else {
            self.leaders.insert(epoch, sid);
        }
    }

    /// An established leader's history starts at this snapshot point: all of it is committed.
    pub fn snapshot_committed(&mut self, zxid: Zxid) {
        self.covered = self.covered.max(zxid);
    }

    /// Number of committed txns recorded.
    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    /// The last committed zxid.
    pub fn last_committed(&self) -> Zxid {
        self.committed.keys().next_back().copied().unwrap_or(Zxid::ZERO)
    }

    /// A replica committed `zxid`. `authoritative`: an established leader's commit (records
    /// the truth); otherwise it is compared with the truth when known.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        at_ms: u64,
        sid: Sid,
        zxid: Zxid,
        hash: u64,
        prev: Zxid,
        digest: Option<i64>,
        authoritative: bool,
    ) {
        match self.committed.get(&zxid).copied() {
            Some(c) => {
                if c.hash != hash {
                    self.violation(
                        at_ms,
                        format!("peer {sid}: committed {zxid:#x} with different content"),
                    );
                }
                if c.prev != prev {
                    self.violation(
                        at_ms,
                        format!(
                            "peer {sid}: committed {zxid:#x} after {prev:#x}, but it follows {:#x}",
                            c.prev
                        ),
                    );
                }
                match (c.digest, digest) {
                    (Some(a), Some(b)) if a != b => self.violation(
                        at_ms,
                        format!("peer {sid}: tree digest at {zxid:#x} is {b:#x}, committed state has {a:#x}"),
                    ),
                    (None, Some(_)) => {
                        self.committed.get_mut(&zxid).expect("present").digest = digest;
                    }
                    _ => {}
                }
            }
            None if authoritative => {
                if let Some((&last, _)) =
                    self.committed.range(zxid..).next().filter(|_| zxid > self.covered)
                {
                    self.violation(
                        at_ms,
                        format!("peer {sid}: committed {zxid:#x} after {last:#x} was committed"),
                    );
                }
                // Its predecessor must be the previous committed txn (or, when that lies below
                // a snapshot point all of which is committed, at least that far).
                if let Some((&before, _)) = self.committed.range(..zxid).next_back() {
                    let ok = if before >= self.covered { prev == before } else { prev >= before };
                    if !ok {
                        self.violation(
                            at_ms,
                            format!(
                                "peer {sid}: committed {zxid:#x} after {prev:#x}, but the previous \
                                 committed txn is {before:#x}"
                            ),
                        );
                    }
                }
                self.committed.insert(zxid, Committed { hash, prev, digest });
            }
            None if zxid > self.covered => self.violation(
                at_ms,
                format!("peer {sid}: committed {zxid:#x}, which no leader committed"),
            ),
            None => {}
        }
    }

    /// A replica's tree is at `zxid` with this digest (after recovery or a SNAP).
    pub fn state_at(&mut self, at_ms: u64, sid: Sid, zxid: Zxid, digest: i64) {
        if let Some(Committed { digest: Some(d), .. }) = self.committed.get(&zxid).copied() {
            if d != digest {
                self.violation(at_ms, format!("peer {sid}: state at {zxid:#x} has digest {digest:#x}, committed state {d:#x}"));
            }
        }
    }

    /// A replica's history is now `(base, entries)`: every committed zxid it covers must be
    /// there with the same content.
    pub fn history(
        &mut self,
        at_ms: u64,
        sid: Sid,
        what: &str,
        base: Zxid,
        entries: &BTreeMap<Zxid, bytes::Bytes>,
    ) {
        let last = entries.keys().next_back().copied().unwrap_or(base);
        if last <= base {
            return;
        }
        let mut bad = Vec::new();
        for (z, c) in self.committed.range(base.next()..=last) {
            match entries.get(z) {
                None => bad.push(format!("peer {sid} lost committed {z:#x} ({what})")),
                Some(d) if hash_bytes(d) != c.hash => bad.push(format!(
                    "peer {sid} holds different content at committed {z:#x} ({what})"
                )),
                _ => {}
            }
            if bad.len() > 3 {
                break;
            }
        }
        for b in bad {
            self.violation(at_ms, b);
        }
    }

    /// A leader that established `epoch` has history `(base, entries)`: every txn committed in
    /// an earlier epoch and above `base` must be in it with the same content.
    ///
    /// Commits of later epochs are not its concern: a leader may count a NEWLEADER
    /// acknowledgement given before the acknowledging follower moved on to a newer epoch
    /// (ZooKeeper does too), so it can establish after a newer leader committed. Its epoch
    /// then orders before the newer one; it can commit nothing, because the quorum that
    /// acknowledged it has accepted the newer epoch, and it abdicates at its next quorum check.
    pub fn leader_history(
        &mut self,
        at_ms: u64,
        sid: Sid,
        epoch: u32,
        base: Zxid,
        entries: &BTreeMap<Zxid, bytes::Bytes>,
    ) {
        let below = Zxid::new(epoch, 0);
        let last = self.committed.range(..below).next_back().map_or(Zxid::ZERO, |(z, _)| *z);
        if last <= base {
            return;
        }
        let missing: Vec<Zxid> = self
            .committed
            .range(base.next()..=last)
            .filter(|(z, c)| entries.get(z).is_none_or(|d| hash_bytes(d) != c.hash))
            .map(|(z, _)| *z)
            .take(3)
            .collect();
        for z in missing {
            self.violation(
                at_ms,
                format!("new leader {sid} lacks committed {z:#x} (or holds other content)"),
            );
        }
    }

    /// A replica's history is about to be cut to what it holds up to `kept` (TRUNC or SNAP):
    /// acknowledged txns above that were never committed, and may go.
    pub fn history_cut(&mut self, sid: Sid, kept: Zxid) {
        if let Some(a) = self.acked_by.get_mut(&sid) {
            *a = (*a).min(kept);
        }
    }

    /// A replica recovered after a crash with its history ending at `last`: nothing it
    /// acknowledged may be gone.
    pub fn recovered(&mut self, at_ms: u64, sid: Sid, last: Zxid) {
        let acked = self.acked_by.get(&sid).copied().unwrap_or(Zxid::ZERO);
        if last < acked {
            self.violation(
                at_ms,
                format!("peer {sid} acknowledged {acked:#x} but recovered only up to {last:#x}"),
            );
        }
    }

    /// The highest zxid `sid` acknowledged (durably) since its history was last cut.
    pub fn acked_of(&self, sid: Sid) -> Zxid {
        self.acked_by.get(&sid).copied().unwrap_or(Zxid::ZERO)
    }

    /// A replica sent ACK for `zxid` while its log was durable up to `durable`.
    pub fn ack(&mut self, at_ms: u64, sid: Sid, zxid: Zxid, durable: Zxid) {
        let a = self.acked_by.entry(sid).or_default();
        *a = (*a).max(zxid.min(durable));
        if zxid > durable {
            self.violation(
                at_ms,
                format!(
                    "peer {sid} acked {zxid:#x} before it was durable (durable up to {durable:#x})"
                ),
            );
        }
    }

    /// Records a violation found by the simulator itself (liveness, final state).
    pub fn fail(&mut self, at_ms: u64, msg: String) {
        self.violation(at_ms, msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn history(zxids: &[Zxid]) -> BTreeMap<Zxid, Bytes> {
        zxids.iter().map(|z| (*z, Bytes::from(format!("txn {z:#x}")))).collect()
    }

    fn commit(c: &mut Checker, zxid: u64, prev: u64) {
        let (zxid, prev) = (Zxid(zxid), Zxid(prev));
        let h = hash_bytes(format!("txn {zxid:#x}").as_bytes());
        c.commit(0, 1, zxid, h, prev, None, true);
    }

    #[test]
    fn leader_missing_an_earlier_epoch_commit_is_a_violation() {
        let mut c = Checker::default();
        commit(&mut c, 0x1_0000_0001, 0);
        commit(&mut c, 0x1_0000_0002, 0x1_0000_0001);
        c.leader_history(1, 2, 2, Zxid::ZERO, &history(&[Zxid(0x1_0000_0001)]));
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
        assert!(c.violations[0].contains("lacks committed 0x100000002"), "{:?}", c.violations);
    }

    #[test]
    fn leader_holding_other_content_is_a_violation() {
        let mut c = Checker::default();
        commit(&mut c, 0x1_0000_0001, 0);
        let mut h = history(&[Zxid(0x1_0000_0001)]);
        h.insert(Zxid(0x1_0000_0001), Bytes::from_static(b"something else"));
        c.leader_history(1, 2, 2, Zxid::ZERO, &h);
        assert_eq!(c.violations.len(), 1, "{:?}", c.violations);
    }

    #[test]
    fn commits_of_a_later_epoch_are_not_required_of_a_stale_leader() {
        // Epoch 2 committed two txns; a leader that establishes epoch 1 afterwards (on a
        // NEWLEADER quorum acknowledged before its followers moved on) need not hold them,
        // but it must hold everything committed before epoch 1.
        let mut c = Checker::default();
        commit(&mut c, 0x2_0000_0001, 0);
        commit(&mut c, 0x2_0000_0002, 0x2_0000_0001);
        c.leader_history(1, 5, 1, Zxid::ZERO, &history(&[]));
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        // The same history for a leader of epoch 3 is a violation.
        c.leader_history(1, 5, 3, Zxid::ZERO, &history(&[]));
        assert_eq!(c.violations.len(), 2, "{:?}", c.violations);
    }

    #[test]
    fn history_below_the_snapshot_base_is_not_asked_for() {
        let mut c = Checker::default();
        commit(&mut c, 0x1_0000_0001, 0);
        commit(&mut c, 0x1_0000_0002, 0x1_0000_0001);
        c.leader_history(1, 2, 2, Zxid(0x1_0000_0001), &history(&[Zxid(0x1_0000_0002)]));
        assert!(c.violations.is_empty(), "{:?}", c.violations);
    }
}
