//! FastLeaderElection (FastLeaderElection.java, FastLeaderElection.tla) while a peer is
//! LOOKING.
//!
//! A vote proposes a leader with its last zxid and current epoch ("peer epoch"). Votes are
//! ordered by peer epoch, then zxid, then server id; only voters can be proposed. Every peer
//! keeps a logical clock (the election epoch): a notification from a later election epoch
//! resets the round, one from an earlier round is answered with our vote and otherwise ignored.
//! A peer decides when the voters agreeing with its proposal are a quorum and no better vote
//! arrives within `finalize_wait` ticks; it also joins an established leader when a quorum of
//! FOLLOWING/LEADING notifications names it and the leader itself says LEADING.
//!
//! Answers to notifications while the peer is not LOOKING are the [`super::Peer`]'s job.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::wire::{Notification, ServerState, NOTIFICATION_VERSION};
use super::{PeerConfig, Sid, Zxid};

/// A vote: the proposed leader, its last zxid and current epoch, in the round `election_epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// The proposed leader (`i64::MIN` from a peer that cannot vote).
    pub leader: i64,
    pub zxid: i64,
    pub election_epoch: i64,
    pub peer_epoch: i64,
}

impl Vote {
    /// The vote a notification carries.
    pub fn of(n: &Notification) -> Vote {
        Vote {
            leader: n.leader,
            zxid: n.zxid,
            election_epoch: n.election_epoch,
            peer_epoch: n.peer_epoch,
        }
    }

    /// A notification carrying this vote.
    pub fn notification(&self, state: ServerState, config: &Bytes) -> Notification {
        Notification {
            state,
            leader: self.leader,
            zxid: self.zxid,
            election_epoch: self.election_epoch,
            peer_epoch: self.peer_epoch,
            version: NOTIFICATION_VERSION,
            config: config.clone(),
        }
    }
}

/// A vote as received, with the sender's state and format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Received {
    vote: Vote,
    state: ServerState,
    version: i32,
}

/// Vote.equals: between votes of peers out of the election only the leader and its epoch
/// matter; with a LOOKING vote on either side everything must match.
fn same_vote(a: &Received, b: &Received) -> bool {
    if a.state == ServerState::Looking || b.state == ServerState::Looking {
        a.vote == b.vote
    } else if (a.version > 0) ^ (b.version > 0) {
        a.vote.leader == b.vote.leader
    } else {
        a.vote.leader == b.vote.leader && a.vote.peer_epoch == b.vote.peer_epoch
    }
}

/// The outcome of an election round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The leader.
    pub leader: Sid,
    /// The vote the peer ends with (its "current vote" while not LOOKING).
    pub vote: Vote,
}

/// One LOOKING period of a peer.
#[derive(Debug, Clone)]
pub struct Election {
    my_id: Sid,
    voter: bool,
    init: Vote,
    logical_clock: i64,
    proposal: Vote,
    recv: BTreeMap<Sid, Received>,
    out_of_election: BTreeMap<Sid, Received>,
    idle_ticks: u32,
    resend_interval: u32,
    finalize_in: Option<u32>,
}

impl Election {
    /// Starts looking (lookForLeader): bumps the logical clock, proposes ourselves (a non-voter
    /// proposes nobody) and notifies every voter. `logical_clock` is the clock before this
    /// election; the new value is [`Election::logical_clock`].
    pub fn start(
        cfg: &PeerConfig,
        my_id: Sid,
        logical_clock: i64,
        last_zxid: Zxid,
        current_epoch: u32,
        out: &mut Vec<(Sid, Notification)>,
    ) -> Election {
        let voter = cfg.is_voter(my_id);
        let init = if voter {
            Vote {
                leader: my_id as i64,
                zxid: last_zxid.to_wire(),
                election_epoch: 0,
                peer_epoch: i64::from(current_epoch),
            }
        } else {
            Vote { leader: i64::MIN, zxid: i64::MIN, election_epoch: 0, peer_epoch: i64::MIN }
        };
        let mut e = Election {
            my_id,
            voter,
            init,
            logical_clock: logical_clock + 1,
            proposal: init,
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            idle_ticks: 0,
            resend_interval: cfg.notification_timeout.max(1),
            finalize_in: None,
        };
        e.send_notifications(cfg, out);
        // Our own vote alone may be a quorum (an ensemble of one): ZooKeeper sees it when its
        // own notification comes back through the loopback.
        let own = Received {
            vote: e.proposal(),
            state: ServerState::Looking,
            version: NOTIFICATION_VERSION,
        };
        if Self::quorum_for(cfg, &e.recv, &own) {
            e.finalize_in = Some(cfg.finalize_wait.max(1));
        }
        e
    }

    /// The logical clock (election epoch) of this round.
    pub fn logical_clock(&self) -> i64 {
        self.logical_clock
    }

    /// The current proposal, stamped with the round.
    pub fn proposal(&self) -> Vote {
        Vote { election_epoch: self.logical_clock, ..self.proposal }
    }

    /// totalOrderPredicate: is the vote (leader, zxid, epoch) better than ours?
    fn better(cfg: &PeerConfig, new: &Vote, cur: &Vote) -> bool {
        if new.leader < 0 || !cfg.is_voter(new.leader as u64) {
            return false;
        }
        (new.peer_epoch, new.zxid, new.leader) > (cur.peer_epoch, cur.zxid, cur.leader)
    }

    fn send_notifications(&mut self, cfg: &PeerConfig, out: &mut Vec<(Sid, Notification)>) {
        let n = self.proposal().notification(ServerState::Looking, &cfg.config_text);
        for &sid in &cfg.voters {
            if sid == self.my_id {
                // Our own notification comes back through the loopback in ZooKeeper; record it.
                self.recv.insert(
                    sid,
                    Received {
                        vote: self.proposal(),
                        state: ServerState::Looking,
                        version: NOTIFICATION_VERSION,
                    },
                );
            } else {
                out.push((sid, n.clone()));
            }
        }
    }

    fn quorum_for(cfg: &PeerConfig, votes: &BTreeMap<Sid, Received>, target: &Received) -> bool {
        cfg.is_quorum(votes.iter().filter(|(_, v)| same_vote(v, target)).map(|(s, _)| s))
    }

    /// checkLeader: a quorum for another peer counts only if that peer says it leads; a quorum
    /// for ourselves only in our own round.
    fn check_leader(
        &self,
        votes: &BTreeMap<Sid, Received>,
        leader: i64,
        election_epoch: i64,
    ) -> bool {
        if leader != self.my_id as i64 {
            u64::try_from(leader)
                .ok()
                .and_then(|l| votes.get(&l))
                .is_some_and(|v| v.state == ServerState::Leading)
        } else {
            self.logical_clock == election_epoch
        }
    }

    /// Handles a notification from `from`. Returns the decision when the election ends.
    pub fn on_notification(
        &mut self,
        cfg: &PeerConfig,
        from: Sid,
        n: &Notification,
        out: &mut Vec<(Sid, Notification)>,
    ) -> Option<Decision> {
        if !cfg.is_voter(from) {
            // A non-voter's notification is only answered (WorkerReceiver).
            out.push((from, self.proposal().notification(ServerState::Looking, &cfg.config_text)));
            return None;
        }
        if n.state == ServerState::Looking && n.election_epoch < self.logical_clock {
            // A peer in an older round: tell it ours (WorkerReceiver).
            out.push((from, self.proposal().notification(ServerState::Looking, &cfg.config_text)));
        }
        self.idle_ticks = 0;
        let leader_ok = n.leader_sid().is_some_and(|l| cfg.is_voter(l));
        if !leader_ok {
            return None;
        }
        let vote = Vote::of(n);
        let rec = Received { vote, state: n.state, version: n.version };
        match n.state {
            ServerState::Looking => {
                if n.election_epoch > self.logical_clock {
                    self.logical_clock = n.election_epoch;
                    self.recv.clear();
                    self.finalize_in = None;
                    self.proposal =
                        if Self::better(cfg, &vote, &self.init) { vote } else { self.init };
                    self.send_notifications(cfg, out);
                } else if n.election_epoch < self.logical_clock {
                    return None;
                } else if Self::better(cfg, &vote, &self.proposal) {
                    self.proposal = vote;
                    self.finalize_in = None;
                    self.send_notifications(cfg, out);
                } else if vote != self.proposal() {
                    // In this round but not voting as we do: it has not heard our better vote
                    // (a lost notification), and hearing from it keeps us from re-sending. Tell
                    // it. (ZooKeeper answers only older rounds; its connections lose nothing
                    // until they break. The simulator, whose notifications may be lost, found
                    // two peers waiting on each other this way for good.)
                    out.push((
                        from,
                        self.proposal().notification(ServerState::Looking, &cfg.config_text),
                    ));
                }
                self.recv.insert(from, rec);
                let target = Received {
                    vote: self.proposal(),
                    state: ServerState::Looking,
                    version: NOTIFICATION_VERSION,
                };
                if self.finalize_in.is_none() && Self::quorum_for(cfg, &self.recv, &target) {
                    if cfg.finalize_wait == 0 {
                        return Some(self.decide_own());
                    }
                    self.finalize_in = Some(cfg.finalize_wait);
                }
                None
            }
            ServerState::Observing => None,
            ServerState::Following | ServerState::Leading => {
                if n.election_epoch == self.logical_clock {
                    self.recv.insert(from, rec);
                    if Self::quorum_for(cfg, &self.recv, &rec)
                        && self.check_leader(&self.recv, n.leader, n.election_epoch)
                    {
                        return Some(Decision { leader: n.leader as Sid, vote });
                    }
                }
                self.out_of_election.insert(from, rec);
                if Self::quorum_for(cfg, &self.out_of_election, &rec)
                    && self.check_leader(&self.out_of_election, n.leader, n.election_epoch)
                {
                    self.logical_clock = n.election_epoch;
                    return Some(Decision { leader: n.leader as Sid, vote });
                }
                None
            }
        }
    }

    fn decide_own(&mut self) -> Decision {
        let vote = self.proposal();
        Decision { leader: vote.leader as Sid, vote }
    }

    /// A tick: ends the finalize wait, or re-sends notifications after a silence (doubling the
    /// interval up to the maximum).
    pub fn on_tick(
        &mut self,
        cfg: &PeerConfig,
        out: &mut Vec<(Sid, Notification)>,
    ) -> Option<Decision> {
        if let Some(left) = self.finalize_in {
            if left <= 1 {
                self.finalize_in = None;
                return Some(self.decide_own());
            }
            self.finalize_in = Some(left - 1);
            return None;
        }
        self.idle_ticks += 1;
        if self.idle_ticks >= self.resend_interval {
            self.idle_ticks = 0;
            self.resend_interval =
                (self.resend_interval * 2).min(cfg.notification_timeout_max.max(1));
            self.send_notifications(cfg, out);
        }
        None
    }

    /// True if this peer votes.
    pub fn is_voter(&self) -> bool {
        self.voter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg3() -> PeerConfig {
        let mut c = PeerConfig::new([1, 2, 3], [4]);
        c.finalize_wait = 1;
        c
    }

    fn looking(leader: i64, zxid: i64, ee: i64, pe: i64) -> Notification {
        Vote { leader, zxid, election_epoch: ee, peer_epoch: pe }
            .notification(ServerState::Looking, &Bytes::new())
    }

    // FastLeaderElection.tla FLEReceiveNotmsg / lookForLeader start: the clock is bumped, the
    // peer votes for itself and notifies every other voter (observers are not notified).
    #[test]
    fn start_votes_for_self() {
        let mut out = Vec::new();
        let e = Election::start(&cfg3(), 1, 4, Zxid(0x1_0000_0003), 1, &mut out);
        assert_eq!(e.logical_clock(), 5);
        let n = looking(1, 0x1_0000_0003, 5, 1);
        assert_eq!(out, vec![(2, n.clone()), (3, n)]);
    }

    // FLE "totalOrderPredicate" (FLEHandleNotmsg, case same round, better vote): a higher peer
    // epoch wins over a higher zxid; the peer adopts it and notifies everyone again.
    #[test]
    fn better_vote_is_adopted_and_broadcast() {
        let cfg = cfg3();
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 1, 0, Zxid(0x1_0000_0009), 1, &mut out);
        out.clear();
        let d = e.on_notification(&cfg, 2, &looking(2, 0x2_0000_0001, 1, 2), &mut out);
        assert_eq!(d, None);
        let n = looking(2, 0x2_0000_0001, 1, 2);
        assert_eq!(out, vec![(2, n.clone()), (3, n)]);
        // Votes 1 and 2 now agree on 2: a quorum, decided after finalizeWait.
        assert_eq!(
            e.on_tick(&cfg, &mut out),
            Some(Decision {
                leader: 2,
                vote: Vote { leader: 2, zxid: 0x2_0000_0001, election_epoch: 1, peer_epoch: 2 }
            })
        );
    }

    // FLE: a notification from a later round resets the round (FLEHandleNotmsg, n.round > round).
    #[test]
    fn later_round_resets() {
        let cfg = cfg3();
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 3, 0, Zxid(0x1_0000_0005), 1, &mut out);
        out.clear();
        // Worse vote in round 7: we move to round 7 but keep our own (better) vote.
        assert_eq!(e.on_notification(&cfg, 1, &looking(1, 0x1_0000_0001, 7, 1), &mut out), None);
        assert_eq!(e.logical_clock(), 7);
        let n = looking(3, 0x1_0000_0005, 7, 1);
        assert_eq!(out, vec![(1, n.clone()), (2, n)]);
    }

    // FLE WorkerReceiver: a LOOKING peer in an older round gets our vote back; its vote is
    // otherwise ignored.
    #[test]
    fn older_round_is_answered() {
        let cfg = cfg3();
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 1, 4, Zxid::ZERO, 0, &mut out);
        out.clear();
        assert_eq!(e.on_notification(&cfg, 2, &looking(3, 9, 2, 9), &mut out), None);
        assert_eq!(out, vec![(2, looking(1, 0, 5, 0))]);
    }

    // FLE: a quorum of FOLLOWING/LEADING notifications naming a leader that says LEADING ends
    // the election without a round of our own (FLEHandleNotmsg, n.state != LOOKING).
    #[test]
    fn joins_established_leader() {
        let cfg = cfg3();
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 3, 0, Zxid::ZERO, 0, &mut out);
        out.clear();
        let v = Vote { leader: 2, zxid: 0x5_0000_0000, election_epoch: 9, peer_epoch: 5 };
        let f = v.notification(ServerState::Following, &Bytes::new());
        assert_eq!(e.on_notification(&cfg, 1, &f, &mut out), None);
        let l = v.notification(ServerState::Leading, &Bytes::new());
        assert_eq!(e.on_notification(&cfg, 2, &l, &mut out), Some(Decision { leader: 2, vote: v }));
        assert_eq!(e.logical_clock(), 9);
        assert!(out.is_empty());
    }

    // An ensemble of one elects itself after finalizeWait.
    #[test]
    fn single_voter_elects_itself() {
        let cfg = PeerConfig::new([7], []);
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 7, 0, Zxid(5), 1, &mut out);
        assert!(out.is_empty());
        assert_eq!(e.on_tick(&cfg, &mut out).map(|d| d.leader), Some(7));
    }

    // Observers are excluded from quorums and cannot be proposed.
    #[test]
    fn observers_do_not_count() {
        let cfg = cfg3();
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 4, 0, Zxid::ZERO, 0, &mut out);
        assert!(!e.is_voter());
        out.clear();
        // A vote naming the observer is ignored.
        assert_eq!(e.on_notification(&cfg, 1, &looking(4, 100, 1, 9), &mut out), None);
        assert_eq!(e.proposal().leader, i64::MIN);
        // One voter for 3 is no quorum; two are.
        assert_eq!(e.on_notification(&cfg, 3, &looking(3, 5, 1, 1), &mut out), None);
        assert_eq!(e.proposal().leader, 3);
        assert_eq!(e.on_tick(&cfg, &mut out), None);
        assert_eq!(e.on_notification(&cfg, 1, &looking(3, 5, 1, 1), &mut out), None);
        assert_eq!(e.on_tick(&cfg, &mut out).map(|d| d.leader), Some(3));
    }

    // lookForLeader's poll timeout: silence re-sends the notifications with a doubling interval.
    #[test]
    fn silence_resends_with_backoff() {
        let cfg = cfg3();
        let mut out = Vec::new();
        let mut e = Election::start(&cfg, 1, 0, Zxid::ZERO, 0, &mut out);
        out.clear();
        let mut sent_at = Vec::new();
        for t in 1..=14 {
            e.on_tick(&cfg, &mut out);
            if !out.is_empty() {
                sent_at.push(t);
                out.clear();
            }
        }
        assert_eq!(sent_at, vec![2, 6, 14]);
    }
}
