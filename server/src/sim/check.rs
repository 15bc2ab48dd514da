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
//! * Durable acks: a replica acknowledges a proposal only once the txn is durable on its disk.
//! * Client writes: every write acknowledged to a client is in the final state.

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
        self.committed.keys().next_back().copied().unwrap_or(0)
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
                self.committed.insert(zxid, Committed { hash, prev, digest });
            }
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
        for (z, c) in self.committed.range(base + 1..=last) {
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

    /// A replica sent ACK for `zxid` while its log was durable up to `durable`.
    pub fn ack(&mut self, at_ms: u64, sid: Sid, zxid: Zxid, durable: Zxid) {
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
