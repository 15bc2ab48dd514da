//! ZAB, ZooKeeper's atomic broadcast, as a sans-IO state machine.
//!
//! A [`Peer`] is one server of an ensemble. It owns the protocol state (election, discovery,
//! sync, broadcast) and nothing else: no sockets, clocks, threads, files or randomness. The
//! runtime feeds it [`Event`]s (a message arrived, a tick passed, the log is durable up to a
//! zxid, a client wants to write) and carries out the [`Command`]s it returns (send a packet,
//! append txns, truncate the log, install a snapshot, persist an epoch, commit up to a zxid).
//!
//! What the runtime must guarantee (the state machine relies on it):
//!
//! * Commands are carried out in the order given. `PersistAcceptedEpoch`, `PersistCurrentEpoch`,
//!   `TruncateLog` and `InstallSnapshot` are durable before any later command of the same list
//!   takes effect: the protocol sends the packet that depends on them right after them.
//! * `AppendTxns` may complete asynchronously (group commit), but in order; the runtime reports
//!   each durable point with [`Event::Durable`]. The peer never acknowledges a txn before that
//!   event (ZOOKEEPER-4646), and never persists a new current epoch before the history it
//!   accepted with it is durable (ZOOKEEPER-4643).
//! * Messages between two peers on one connection arrive in order or not at all (TCP); a broken
//!   connection is reported with [`Event::Disconnected`].
//! * After a crash the peer is rebuilt with [`Peer::new`] from what is durable.
//!
//! Submodules: [`wire`] (the byte formats, exactly Apache ZooKeeper's), [`election`]
//! (FastLeaderElection), [`history`] (the committed-log window and the sync decision), and
//! [`peer`] (discovery, sync and broadcast for the leader and learner roles).

pub mod election;
pub mod history;
pub mod membership;
pub mod peer;
pub mod wire;

pub use election::{Election, Vote};
pub use history::{plan_sync, HistoryWindow, SyncPlan};
pub use membership::Membership;
pub use peer::{Command, Event, LeaderReport, Peer, PeerState, Role};
pub use wire::{LearnerInfo, Notification, PacketType, QuorumPacket, ServerState};

use std::collections::BTreeSet;

/// A server id (`myid`).
pub type Sid = u64;

pub use crate::zxid::Zxid;

/// A runtime's number for one quorum connection (unique per peer pair and runtime).
pub type ConnId = u64;

/// The epoch of a zxid.
pub fn epoch_of(zxid: Zxid) -> u32 {
    zxid.epoch()
}

/// The counter of a zxid.
pub fn counter_of(zxid: Zxid) -> u32 {
    zxid.counter()
}

/// Builds a zxid.
pub fn make_zxid(epoch: u32, counter: u32) -> Zxid {
    Zxid::new(epoch, counter)
}

/// The ensemble and the protocol's limits. Times are in ticks (ZooKeeper's tickTime units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Voting members (participants).
    pub voters: BTreeSet<Sid>,
    /// Observers: they learn every commit but never vote or acknowledge.
    pub observers: BTreeSet<Sid>,
    /// `initLimit`: discovery plus initial sync must finish within this many ticks.
    pub init_limit: u32,
    /// `syncLimit`: a learner silent this long is dropped; a learner that hears nothing from
    /// its leader this long gives up on it.
    pub sync_limit: u32,
    /// `zookeeper.commitLogCount`: how many committed txns the leader keeps for DIFF syncs.
    pub commit_log_count: usize,
    /// FastLeaderElection's finalizeWait: ticks to wait for a better vote once a quorum agrees.
    pub finalize_wait: u32,
    /// The first re-send interval of election notifications when nothing arrives (ticks).
    pub notification_timeout: u32,
    /// The largest re-send interval (maxNotificationInterval, ticks).
    pub notification_timeout_max: u32,
    /// The election's own clock: 0, the election counts in ticks ([`Event::Tick`]); otherwise
    /// it counts in [`Event::ElectionTick`]s, which the runtime sends every this many ms
    /// (ZooKeeper's FastLeaderElection counts milliseconds, whatever tickTime is: finalizeWait
    /// 200 ms). A learner retries connecting to its leader on these ticks too.
    pub election_tick_ms: u32,
    /// The dynamic-config text sent in notifications and NEWLEADER (may be empty), and
    /// held in `/zookeeper/config` by members.
    pub config_text: bytes::Bytes,
    /// The configuration's version (`version=` of the text; 0 for a static zoo.cfg).
    pub config_version: u64,
    /// `reconfigEnabled`: memberships change by reconfig txns (COMMITANDACTIVATE,
    /// INFORMANDACTIVATE), by a leader's NEWLEADER and by newer configs in notifications.
    pub reconfig_enabled: bool,
    /// Test only (`corral.test.unsafeCommitWithoutQuorum`): a leader commits a proposal once
    /// its own log holds it — a broken server for checking that fault tests catch lost writes.
    pub unsafe_commit_without_quorum: bool,
    /// tickTime in milliseconds: session timeouts are counted in ticks of this length.
    pub tick_ms: u32,
    /// Proposals a leader keeps outstanding (proposed, not committed) at most:
    /// [`Peer::next_zxid`] is `None` while this many are, and the runtime waits.
    pub outstanding_max: usize,
    /// Txns a learner accepts in one sync (DIFF proposals staged before NEWLEADER); a leader
    /// sending more is abandoned.
    pub sync_txns_max: usize,
    /// Bytes of a SNAP payload a learner accepts; a larger one is refused and the learner
    /// goes back to LOOKING (the runtime enforces it while the bytes arrive, too).
    pub snapshot_bytes_max: usize,
}

impl PeerConfig {
    /// A config for these voters and observers with ZooKeeper-like limits (initLimit 10,
    /// syncLimit 5 ticks, commitLogCount 500).
    pub fn new(
        voters: impl IntoIterator<Item = Sid>,
        observers: impl IntoIterator<Item = Sid>,
    ) -> Self {
        PeerConfig {
            voters: voters.into_iter().collect(),
            observers: observers.into_iter().collect(),
            init_limit: 10,
            sync_limit: 5,
            commit_log_count: 500,
            finalize_wait: 1,
            notification_timeout: 2,
            notification_timeout_max: 16,
            election_tick_ms: 0,
            config_text: bytes::Bytes::new(),
            config_version: 0,
            reconfig_enabled: false,
            unsafe_commit_without_quorum: false,
            tick_ms: 2000,
            outstanding_max: 1000,
            sync_txns_max: 500 + 1000 + 16,
            snapshot_bytes_max: 4 << 30,
        }
    }

    /// True if `sid` votes.
    pub fn is_voter(&self, sid: Sid) -> bool {
        self.voters.contains(&sid)
    }

    /// True if `sid` is a member (voter or observer).
    pub fn is_member(&self, sid: Sid) -> bool {
        self.voters.contains(&sid) || self.observers.contains(&sid)
    }

    /// Takes `m` (whose text is `text`) as the membership.
    pub fn adopt(&mut self, m: &Membership, text: bytes::Bytes) {
        self.voters = m.voters();
        self.observers = m.observers();
        self.config_text = text;
        self.config_version = m.version;
    }

    /// True if the voters among `set` are a majority of all voters.
    pub fn is_quorum<'a>(&self, set: impl IntoIterator<Item = &'a Sid>) -> bool {
        let n = set.into_iter().filter(|s| self.voters.contains(s)).count();
        2 * n > self.voters.len()
    }
}
