//! One server of the ensemble: election, then discovery, sync and broadcast as leader or
//! learner (Leader.java, LearnerHandler.java, Learner.java, Follower.java, Observer.java; the
//! phases of the Zab paper and of Zab.tla).
//!
//! Leader (discovery): it proposes epoch max(acceptedEpoch of a quorum of FOLLOWERINFOs, its
//! own) + 1, persists it as its acceptedEpoch and sends LEADERINFO; learners persist it and
//! answer ACKEPOCH with their current epoch and last zxid. A learner more recent than the leader
//! is refused. Once its own history is durable and a quorum has acked the epoch, the leader
//! persists it as its current epoch.
//!
//! Leader (sync): per learner, DIFF / TRUNC+DIFF / TRUNC / SNAP from its history window
//! ([`super::plan_sync`]), then the outstanding proposals, then NEWLEADER. A learner applies the
//! sync only at NEWLEADER, makes it durable, only then persists the new current epoch, and only
//! then acks NEWLEADER; it commits what the sync held only at UPTODATE, once the leader is
//! established. A quorum of NEWLEADER acks establishes the leader (its whole history is
//! committed) and UPTODATE lets learners serve.
//!
//! Broadcast: PROPOSAL / ACK / COMMIT to followers, INFORM to observers, commits in zxid order
//! once a quorum (the leader's own ack comes from its durable log) has acked; PING every tick;
//! learners forward writes as REQUEST; sync requests flush the pipe; silent learners are dropped
//! after syncLimit ticks, and a leader without a quorum of live followers steps down.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::election::{Decision, Election, Vote};
use super::history::{plan_sync, HistoryWindow, SyncPlan};
use super::membership::{reconfig_text, with_version, Membership};
use super::wire::{
    decode_i32, decode_revalidate, decode_revalidate_reply, decode_touches, encode_i32,
    encode_revalidate, encode_revalidate_reply, encode_touches, ForwardedRequest, LearnerInfo,
    Notification, PacketType, QuorumPacket, ServerState, PROTOCOL_VERSION,
};
use super::{counter_of, epoch_of, make_zxid, ConnId, PeerConfig, Sid, Zxid};
use crate::db::ReceivedSnapshot;
use crate::session::tracker::{SessionTracker, Touches};

/// The ZooKeeper opcode of a client sync request.
pub const OP_SYNC: i32 = 9;
/// createSession's opcode in a REQUEST.
const OP_CREATE_SESSION: i32 = crate::proto::OpCode::CreateSession as i32;
/// closeSession's opcode in a REQUEST.
const OP_CLOSE_SESSION: i32 = crate::proto::OpCode::CloseSession as i32;

/// What a peer recovers from its disk on start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// The `acceptedEpoch` file.
    pub accepted_epoch: u32,
    /// The `currentEpoch` file.
    pub current_epoch: u32,
    /// The tail of the log (its last entry is the last logged zxid); its base is the snapshot
    /// zxid when the log holds fewer entries than the window.
    pub history: HistoryWindow,
    /// The zxid of the snapshot the log continues: the log cannot be truncated below it.
    pub snapshot_zxid: Zxid,
    /// The newest reconfig txn in the recovered state (its zxid and membership text), if it is
    /// newer than the configured membership: a leader completes it (ZooKeeper keeps it in
    /// its `.next` dynamic file). Possibly older than the history window.
    pub logged_config: Option<(Zxid, Bytes)>,
}

/// An input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One tick (tickTime) passed.
    Tick,
    /// An election notification arrived.
    Notification { from: Sid, n: Notification },
    /// The quorum connection `conn` with `peer` is up (either side opened it). A runtime
    /// numbers its connections so that news of an old one cannot be taken for the new one.
    Connected { peer: Sid, conn: ConnId },
    /// The quorum connection `conn` with `peer` broke; `None`: a connection attempt to `peer`
    /// failed before any connection was up. News of a connection other than the current one
    /// with that peer (a late report of an earlier socket) changes nothing.
    Disconnected { peer: Sid, conn: Option<ConnId> },
    /// A quorum packet arrived on connection `conn`. A runtime may still deliver what a
    /// connection had buffered after the connection closed, even after a newer connection with
    /// the same peer is up: a packet of a connection other than the current one is stale, and
    /// dropped.
    Packet { from: Sid, conn: ConnId, packet: QuorumPacket },
    /// The snapshot body that follows a SNAP packet arrived on connection `conn`.
    Snapshot { from: Sid, conn: ConnId, body: ReceivedSnapshot },
    /// Everything appended up to `zxid` is durable.
    Durable { zxid: Zxid },
    /// The leader's runtime prepared a txn for [`Peer::next_zxid`].
    Propose { zxid: Zxid, data: Bytes },
    /// A tick of the election's clock ([`PeerConfig::election_tick_ms`]).
    ElectionTick,
    /// A client connected to this peer sent a write (or sync) request.
    ClientRequest { request: ForwardedRequest },
    /// A client of this peer was heard from (its session is alive).
    TouchSession { session_id: i64, timeout: i32 },
    /// A client moved its session to this peer: ask the leader whether it is still valid.
    Revalidate { session_id: i64, timeout: i32 },
    /// The runtime applied a createSession txn (the leader tracks global sessions).
    SessionCreated { session_id: i64, timeout: i32 },
    /// The runtime applied a closeSession txn.
    SessionClosed { session_id: i64 },
}

/// An output, to be carried out in order (see the module documentation of [`super`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send an election notification.
    SendNotification { to: Sid, n: Notification },
    /// Open the quorum connection to the leader.
    Connect { to: Sid },
    /// Close the quorum connection `conn` with a peer (`None`: whichever is up, and stop
    /// trying to open one).
    Disconnect { peer: Sid, conn: Option<ConnId> },
    /// Send a quorum packet.
    Send { to: Sid, packet: QuorumPacket },
    /// Send the SNAP payload: the state as of `zxid` (every txn up to it applied), then
    /// "BenWasHere".
    SendSnapshot { to: Sid, zxid: Zxid },
    /// Durably write the acceptedEpoch file.
    PersistAcceptedEpoch(u32),
    /// Durably write the currentEpoch file.
    PersistCurrentEpoch(u32),
    /// Append txns to the log; report [`Event::Durable`] when they are durable.
    AppendTxns(Vec<(Zxid, Bytes)>),
    /// Durably remove every logged txn after `zxid`, and rebuild the state from what remains.
    TruncateLog(Zxid),
    /// Durably replace the whole state by a snapshot taken at `zxid` (`None`: the empty initial
    /// state), with an empty log after it. `fuzzy_until`: the body may already hold the effects
    /// of txns up to this zxid — a ZooKeeper leader serializes its tree while it goes on
    /// applying what it committed, and sends those txns after the snapshot — so applying them
    /// again cannot reproduce the digests they were logged with, and theirs are not compared
    /// ([`Zxid::ZERO`]: an exact snapshot).
    InstallSnapshot { zxid: Zxid, body: Option<ReceivedSnapshot>, fuzzy_until: Zxid },
    /// Every txn up to `zxid` is committed: apply them.
    Commit(Zxid),
    /// Leader: prepare this request as a txn and propose it ([`Event::Propose`]).
    Request { from: Sid, request: ForwardedRequest },
    /// Leader: the request came from a server that no longer owns its session (the session
    /// moved to another server): propose an error txn SESSIONMOVED for it.
    SessionMoved { from: Sid, request: ForwardedRequest },
    /// A sync request of this peer's clients has passed every earlier write (FIFO).
    SyncDone,
    /// The leader's answer to a REVALIDATE.
    Revalidated { session_id: i64, valid: bool },
    /// Leader: the session timed out; propose its closeSession.
    ExpireSession { session_id: i64 },
    /// The peer's role changed.
    RoleChanged(Role),
    /// Leader: a quorum acked NEWLEADER; the epoch is established.
    Established { epoch: u32 },
    /// Learner: UPTODATE arrived; the peer may serve clients. `synced_by` is how the leader
    /// synced it: "DIFF", "TRUNC" or "SNAP" (for its log).
    UpToDate { epoch: u32, synced_by: &'static str },
    /// A new membership is active (a reconfig txn committed, a leader's NEWLEADER, a newer
    /// config in a notification): the runtime updates `/zookeeper/config` and the peers it
    /// talks to, and writes the dynamic config file.
    Activate { text: Bytes, version: u64 },
    /// Learner: the leader activated a configuration changed by reconfig (COMMITANDACTIVATE,
    /// INFORMANDACTIVATE of the reconfig txn `zxid`) but `reconfigEnabled` is off here: the
    /// txn is committed and the membership stays the configured one, as ZooKeeper does (for
    /// the log: the memberships now differ).
    ReconfigIgnored { zxid: Zxid, leader: Sid },
    /// Leader: how a learner is being synced (for metrics and the simulator's counters).
    SyncStarted { learner: Sid, plan: SyncPlan },
}

/// What a leader reports of its learners (ZooKeeper's leader metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaderReport {
    /// Learners connected (followers and observers, in any phase).
    pub learners: usize,
    /// Followers in broadcast.
    pub synced_followers: usize,
    /// Observers in broadcast.
    pub synced_observers: usize,
    /// Sync requests waiting for a commit.
    pub pending_syncs: usize,
    /// Proposals not yet committed.
    pub outstanding: usize,
    /// (last, smallest, largest) txn size proposed; `None` before the first.
    pub proposal_sizes: Option<(i64, i64, i64)>,
}

/// A peer's role as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Looking,
    Leading { epoch: Option<u32>, established: bool },
    Following { leader: Sid, serving: bool },
    Observing { leader: Sid, serving: bool },
}

/// State shared by every role.
#[derive(Debug)]
struct Core {
    cfg: PeerConfig,
    id: Sid,
    accepted_epoch: u32,
    current_epoch: u32,
    history: HistoryWindow,
    snapshot_zxid: Zxid,
    last_durable: Zxid,
    now: u64,
    /// The log could not be truncated where a leader asked (below the snapshot it starts
    /// from): at the next sync, with whichever leader, report an empty history and rebuild
    /// from nothing. (It was tied to the asking leader's epoch once; when leadership kept
    /// changing, the peer never synced — a liveness failure the simulator found.)
    reset_pending: bool,
    /// Leader: the membership a reconfig txn proposed and not yet activated (ZooKeeper's
    /// last-seen quorum verifier). From its txn on, every proposal needs a quorum of both.
    next: Option<NextConfig>,
    /// The newest reconfig txn of the history (it may be older than the window), for a
    /// leader to complete: kept as txns enter the history and dropped when a TRUNC or SNAP
    /// takes it away.
    logged: Option<NextConfig>,
    /// What this peer has done so far (ZooKeeper's quorum counters).
    counters: PeerCounters,
}

/// Counts of ZAB traffic since the peer started (ZooKeeper's `proposal_count`, `commit_count`,
/// `learner_proposal_received_count`, `learner_commit_received_count`, `revalidate_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCounters {
    /// Leader: txns proposed.
    pub proposals: u64,
    /// Leader: txns committed.
    pub commits: u64,
    /// Follower: PROPOSALs received in broadcast.
    pub proposals_received: u64,
    /// Follower, observer: COMMITs (INFORMs) received in broadcast.
    pub commits_received: u64,
    /// Leader: REVALIDATEs received from learners.
    pub revalidations: u64,
}

/// A membership proposed and not yet active.
#[derive(Debug, Clone)]
struct NextConfig {
    /// The reconfig txn (for the version a new leader gives the initial config: its epoch's
    /// first zxid, no txn).
    zxid: Zxid,
    text: Bytes,
    voters: BTreeSet<Sid>,
}

impl NextConfig {
    fn parse(zxid: Zxid, text: Bytes) -> Option<NextConfig> {
        let m = Membership::parse_bytes(&text)?;
        Some(NextConfig { zxid, text, voters: m.voters() })
    }
}

/// True if the voters in `set` are a majority of `voters`.
fn majority<'a>(voters: &BTreeSet<Sid>, set: impl IntoIterator<Item = &'a Sid>) -> bool {
    let n = set.into_iter().filter(|s| voters.contains(s)).count();
    2 * n > voters.len()
}

impl Core {
    fn last_zxid(&self) -> Zxid {
        self.history.last()
    }

    /// True if `q` holds for the active voters and, for `zxid` (`None`: any) from a proposed
    /// reconfig on, for its voters too (ZooKeeper's proposals with two quorum verifiers).
    fn quorums(&self, zxid: Option<Zxid>, q: impl Fn(&BTreeSet<Sid>) -> bool) -> bool {
        q(&self.cfg.voters)
            && self.next.as_ref().is_none_or(|n| zxid.is_some_and(|z| z < n.zxid) || q(&n.voters))
    }

    /// Makes `text` the active membership if it is newer than the active one; returns the
    /// voters before it, or `None` if nothing changed.
    fn activate(&mut self, text: &Bytes, out: &mut Vec<Command>) -> Option<BTreeSet<Sid>> {
        let m = Membership::parse_bytes(text)?;
        if m.version <= self.cfg.config_version {
            return None;
        }
        let before = self.cfg.voters.clone();
        self.cfg.adopt(&m, text.clone());
        if self.next.as_ref().is_some_and(|n| n.zxid.get() <= m.version) {
            self.next = None;
        }
        out.push(Command::Activate { text: text.clone(), version: m.version });
        Some(before)
    }

    /// Leader: the newest reconfig txn of the history newer than the active membership (its
    /// whole history commits when it establishes), or with `reconfigEnabled` and the initial
    /// configuration (version 0), that configuration with the version `zxid`
    /// (ZOOKEEPER-1783): what NEWLEADER carries and the leader activates once established.
    fn next_for_leader(&self, zxid: Zxid) -> Option<NextConfig> {
        if !self.cfg.reconfig_enabled || self.cfg.config_text.is_empty() {
            return None;
        }
        let in_window = self.history.entries().rev().find_map(|(z, d)| {
            let n = NextConfig::parse(*z, reconfig_text(d)?)?;
            (z.get() > self.cfg.config_version).then_some(n)
        });
        let logged = self.logged.clone().filter(|n| n.zxid.get() > self.cfg.config_version);
        let newest = match (in_window, logged) {
            (Some(a), Some(b)) => Some(if a.zxid >= b.zxid { a } else { b }),
            (a, b) => a.or(b),
        };
        newest.or_else(|| {
            (self.cfg.config_version == 0)
                .then(|| NextConfig::parse(zxid, with_version(&self.cfg.config_text, zxid.get())))
                .flatten()
        })
    }

    /// A reconfig txn `zxid` entered the history (or the staged sync): it is the newest logged
    /// one. A reconfig still logged and not active below it is committed — a leader proposes
    /// one only once the one before is active — and is activated now: otherwise this peer,
    /// leading later, would hold only the newer one as pending and need no quorum of the
    /// membership that committed txns between the two.
    fn log_reconfig(&mut self, zxid: Zxid, text: Bytes, out: &mut Vec<Command>) {
        if let Some(older) = self.logged.take() {
            if older.zxid < zxid && older.zxid.get() > self.cfg.config_version {
                self.activate(&older.text, out);
            }
        }
        self.logged = NextConfig::parse(zxid, text);
    }

    fn send(out: &mut Vec<Command>, to: Sid, packet: QuorumPacket) {
        out.push(Command::Send { to, packet });
    }
}

enum Next {
    Stay,
    Looking,
    /// A reconfig named this leader (or changed this peer's role): go straight to following
    /// it, or leading (ZooKeeper's updateServerState after a reconfig), without an election.
    HandOff(Sid),
}

/// One server.
#[derive(Debug)]
pub struct Peer {
    core: Core,
    logical_clock: i64,
    current_vote: Vote,
    role: RoleState,
}

#[derive(Debug)]
enum RoleState {
    Looking(Election),
    Leading(Box<Leader>),
    Learning(Box<Learner>),
}

impl Peer {
    /// A peer starting from its durable state; it starts LOOKING. The returned commands are the
    /// first election notifications.
    pub fn new(cfg: PeerConfig, id: Sid, state: PeerState) -> (Peer, Vec<Command>) {
        let mut history = HistoryWindow::new(state.history.base(), cfg.commit_log_count);
        for (z, d) in state.history.entries() {
            history.push(*z, d.clone());
        }
        let last = history.last();
        let core = Core {
            cfg,
            id,
            accepted_epoch: state.accepted_epoch,
            current_epoch: state.current_epoch,
            history,
            snapshot_zxid: state.snapshot_zxid,
            last_durable: last,
            now: 0,
            reset_pending: false,
            next: None,
            logged: state.logged_config.and_then(|(z, t)| NextConfig::parse(z, t)),
            counters: PeerCounters::default(),
        };
        let vote = Vote {
            leader: id as i64,
            zxid: last.to_wire(),
            election_epoch: 0,
            peer_epoch: i64::from(state.current_epoch),
        };
        let mut out = Vec::new();
        let mut sends = Vec::new();
        let e = Election::start(&core.cfg, id, 0, last, core.current_epoch, &mut sends);
        out.extend(sends.into_iter().map(|(to, n)| Command::SendNotification { to, n }));
        let peer = Peer {
            logical_clock: e.logical_clock(),
            core,
            current_vote: vote,
            role: RoleState::Looking(e),
        };
        (peer, out)
    }

    /// A standalone server: the one voter of its ensemble, leading at once in the epoch of its
    /// last zxid, so zxids go on from where the log ends, as ZooKeeper's standalone server's do
    /// (no election, no new epoch, no epoch files). Everything it has logged is committed. The
    /// returned commands announce the role and commit the history.
    ///
    /// Panics if `cfg` has any member other than `id` (a runtime bug).
    pub fn standalone(cfg: PeerConfig, id: Sid, state: PeerState) -> (Peer, Vec<Command>) {
        assert!(
            cfg.voters.len() == 1 && cfg.is_voter(id) && cfg.observers.is_empty(),
            "a standalone peer is the only member of its ensemble"
        );
        let (mut peer, _) = Peer::new(cfg, id, state);
        let last = peer.core.last_zxid();
        let epoch = epoch_of(last).max(peer.core.current_epoch);
        let mut l = Leader::start(&peer.core);
        l.epoch = Some(epoch);
        l.proposed_epoch = epoch;
        l.epoch_quorum = true;
        l.newleader_acks.insert(id);
        l.established = true;
        l.last_committed = last;
        l.last_proposed = last.max(make_zxid(epoch, 0));
        peer.current_vote = Vote {
            leader: id as i64,
            zxid: last.to_wire(),
            election_epoch: 0,
            peer_epoch: epoch.into(),
        };
        peer.role = RoleState::Leading(Box::new(l));
        let out = vec![
            Command::RoleChanged(Role::Leading { epoch: Some(epoch), established: true }),
            Command::Commit(last),
        ];
        (peer, out)
    }

    /// This peer's id.
    pub fn id(&self) -> Sid {
        self.core.id
    }

    /// The config.
    pub fn config(&self) -> &PeerConfig {
        &self.core.cfg
    }

    /// The role.
    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::Looking(_) => Role::Looking,
            RoleState::Leading(l) => Role::Leading { epoch: l.epoch, established: l.established },
            RoleState::Learning(l) if l.observer => {
                Role::Observing { leader: l.leader, serving: l.phase == LPhase::Active }
            }
            RoleState::Learning(l) => {
                Role::Following { leader: l.leader, serving: l.phase == LPhase::Active }
            }
        }
    }

    /// The ZAB phase, as ZooKeeper's `zk_peer_state` names it after the server state:
    /// `election`, `discovery`, `synchronization` or `broadcast`.
    pub fn zab_phase(&self) -> &'static str {
        match &self.role {
            RoleState::Looking(_) => "election",
            RoleState::Leading(l) if l.established => "broadcast",
            RoleState::Leading(l) if l.epoch.is_some() => "synchronization",
            RoleState::Leading(_) => "discovery",
            RoleState::Learning(l) => match l.phase {
                LPhase::Connecting | LPhase::WaitLeaderInfo => "discovery",
                LPhase::WaitSync | LPhase::Syncing | LPhase::AfterNewLeader => "synchronization",
                LPhase::Active => "broadcast",
            },
        }
    }

    /// What this peer has done so far.
    pub fn counters(&self) -> PeerCounters {
        self.core.counters
    }

    /// A leader's view of its learners (`mntr`'s leader keys); `None` unless leading.
    pub fn leader_report(&self) -> Option<LeaderReport> {
        let RoleState::Leading(l) = &self.role else { return None };
        let synced = |observer: bool| {
            l.learners
                .values()
                .filter(|h| h.observer == observer && h.phase == HPhase::Active)
                .count()
        };
        Some(LeaderReport {
            learners: l.learners.len(),
            synced_followers: synced(false),
            synced_observers: synced(true),
            pending_syncs: l.pending_syncs.len(),
            outstanding: l.outstanding.len(),
            proposal_sizes: l.proposal_sizes,
        })
    }

    /// Leader: may this server's own client send requests for `session_id` (it owns the
    /// session, or nobody does yet and now it does)? False if the session moved to another
    /// server (SESSIONMOVED). Not leading: true.
    pub fn claim_session(&mut self, session_id: i64) -> bool {
        let id = self.core.id;
        match &mut self.role {
            RoleState::Leading(l) if !l.sessions.contains(session_id) => true,
            RoleState::Leading(l) => *l.owners.entry(session_id).or_insert(id) == id,
            _ => true,
        }
    }

    /// True if the peer may serve clients: an established leader or an up-to-date learner.
    pub fn is_serving(&self) -> bool {
        matches!(
            self.role(),
            Role::Leading { established: true, .. }
                | Role::Following { serving: true, .. }
                | Role::Observing { serving: true, .. }
        )
    }

    /// The acceptedEpoch.
    pub fn accepted_epoch(&self) -> u32 {
        self.core.accepted_epoch
    }

    /// The currentEpoch.
    pub fn current_epoch(&self) -> u32 {
        self.core.current_epoch
    }

    /// The last zxid of the history (appended, durable or not).
    pub fn last_zxid(&self) -> Zxid {
        self.core.last_zxid()
    }

    /// The last durable zxid reported.
    pub fn last_durable(&self) -> Zxid {
        self.core.last_durable
    }

    /// The zxid the next proposal must carry, if this peer is an established leader.
    pub fn next_zxid(&self) -> Option<Zxid> {
        match &self.role {
            RoleState::Leading(l) if l.established && l.handoff.is_none() => {
                let next = l.last_proposed.next();
                (counter_of(next) != u32::MAX
                    && l.outstanding.len() < self.core.cfg.outstanding_max)
                    .then_some(next)
            }
            _ => None,
        }
    }

    /// An established leader: how many more proposals it may have in flight now (0 during a
    /// hand-over, or with its epoch's counter spent); `None` otherwise.
    pub fn proposal_room(&self) -> Option<usize> {
        match &self.role {
            RoleState::Leading(l) if l.established => {
                Some(if l.handoff.is_some() || counter_of(l.last_proposed.next()) == u32::MAX {
                    0
                } else {
                    self.core.cfg.outstanding_max.saturating_sub(l.outstanding.len())
                })
            }
            _ => None,
        }
    }

    /// Leader: a reconfig is proposed and not yet active (another one must wait).
    pub fn reconfig_in_progress(&self) -> bool {
        matches!(self.role, RoleState::Leading(_)) && self.core.next.is_some()
    }

    /// Leader: a quorum of `voters` is connected and synced (this leader among them if it is
    /// one): ZooKeeper's `isQuorumSynced`, which a reconfig's new membership must pass. Only
    /// followers that vote now count: a follower the last reconfig made an observer (or
    /// removed) may still be connected on its way out, and could never ack.
    pub fn is_quorum_synced(&self, voters: &BTreeSet<Sid>) -> bool {
        let RoleState::Leading(l) = &self.role else { return false };
        let synced = l
            .learners
            .iter()
            .filter(|(s, h)| {
                !h.observer
                    && self.core.cfg.is_voter(**s)
                    && matches!(h.phase, HPhase::Active | HPhase::NewLeaderAcked)
            })
            .map(|(s, _)| s);
        majority(voters, synced.chain(std::iter::once(&self.core.id)))
    }

    /// The leader's last committed zxid (None unless leading).
    pub fn last_committed(&self) -> Option<Zxid> {
        match &self.role {
            RoleState::Leading(l) => Some(l.last_committed),
            _ => None,
        }
    }

    /// Feeds one event; the commands to carry out are appended to `out`.
    pub fn step(&mut self, ev: Event, out: &mut Vec<Command>) {
        let epoch_before = self.core.current_epoch;
        self.step_inner(ev, out);
        if self.core.current_epoch != epoch_before && !matches!(self.role, RoleState::Looking(_)) {
            // updateElectionVote (ZOOKEEPER-1732): the vote we answer LOOKING peers with carries
            // the epoch we now follow or lead, so that they see a quorum agree on it.
            self.current_vote.peer_epoch = i64::from(self.core.current_epoch);
        }
    }

    fn step_inner(&mut self, ev: Event, out: &mut Vec<Command>) {
        let next = match ev {
            Event::Tick => {
                self.core.now += 1;
                self.on_tick(out)
            }
            Event::ElectionTick if self.core.cfg.election_tick_ms == 0 => Next::Stay,
            Event::ElectionTick => match &mut self.role {
                RoleState::Looking(_) => self.election_tick(out),
                RoleState::Learning(l) => l.on_election_tick(&self.core, out),
                RoleState::Leading(l) => l.hand_over_now(&self.core),
            },
            Event::Notification { from, n } => self.on_notification(from, n, out),
            Event::Durable { zxid } => {
                if zxid > self.core.last_durable {
                    self.core.last_durable = zxid.min(self.core.last_zxid());
                }
                match &mut self.role {
                    RoleState::Leading(l) => l.on_durable(&mut self.core, out),
                    RoleState::Learning(l) => l.on_durable(&mut self.core, out),
                    RoleState::Looking(_) => Next::Stay,
                }
            }
            ev => match &mut self.role {
                RoleState::Leading(l) => l.on_event(&mut self.core, ev, out),
                RoleState::Learning(l) => l.on_event(&mut self.core, ev, out),
                RoleState::Looking(_) => {
                    match ev {
                        Event::Connected { peer, conn } => {
                            out.push(Command::Disconnect { peer, conn: Some(conn) })
                        }
                        Event::Packet { from, conn, .. } => {
                            out.push(Command::Disconnect { peer: from, conn: Some(conn) })
                        }
                        _ => {}
                    }
                    Next::Stay
                }
            },
        };
        match next {
            Next::Stay => {}
            Next::Looking => self.become_looking(out),
            Next::HandOff(leader) => self.hand_off(leader, out),
        }
    }

    fn on_tick(&mut self, out: &mut Vec<Command>) -> Next {
        match &mut self.role {
            RoleState::Looking(_) if self.core.cfg.election_tick_ms != 0 => Next::Stay,
            RoleState::Looking(_) => self.election_tick(out),
            RoleState::Leading(l) => l.on_tick(&mut self.core, out),
            RoleState::Learning(l) => l.on_tick(&mut self.core, out),
        }
    }

    /// One tick of the election's clock: ends the finalize wait, or re-sends notifications.
    fn election_tick(&mut self, out: &mut Vec<Command>) -> Next {
        let RoleState::Looking(e) = &mut self.role else { return Next::Stay };
        let mut sends = Vec::new();
        let d = e.on_tick(&self.core.cfg, &mut sends);
        out.extend(sends.into_iter().map(|(to, n)| Command::SendNotification { to, n }));
        if let Some(d) = d {
            self.decided(d, out);
        }
        Next::Stay
    }

    fn my_state(&self) -> ServerState {
        match &self.role {
            RoleState::Looking(_) => ServerState::Looking,
            RoleState::Leading(_) => ServerState::Leading,
            RoleState::Learning(l) if l.observer => ServerState::Observing,
            RoleState::Learning(_) => ServerState::Following,
        }
    }

    fn on_notification(&mut self, from: Sid, n: Notification, out: &mut Vec<Command>) -> Next {
        if self.core.cfg.reconfig_enabled && matches!(self.role, RoleState::Looking(_)) {
            // A newer membership than ours (a reconfig this peer missed): take it and start
            // the election over with it (FastLeaderElection's processReconfig).
            if self.core.activate(&n.config, out).is_some() {
                self.restart_election(out);
            }
        }
        if !self.core.cfg.is_member(from) {
            return Next::Stay;
        }
        match &mut self.role {
            RoleState::Looking(e) => {
                let mut sends = Vec::new();
                let d = e.on_notification(&self.core.cfg, from, &n, &mut sends);
                self.logical_clock = e.logical_clock();
                out.extend(sends.into_iter().map(|(to, n)| Command::SendNotification { to, n }));
                if let Some(d) = d {
                    self.decided(d, out);
                }
            }
            _ => {
                // Not looking: a LOOKING peer is told who leads (WorkerReceiver).
                if n.state == ServerState::Looking {
                    let reply =
                        self.current_vote.notification(self.my_state(), &self.core.cfg.config_text);
                    out.push(Command::SendNotification { to: from, n: reply });
                }
            }
        }
        Next::Stay
    }

    fn decided(&mut self, d: Decision, out: &mut Vec<Command>) {
        if let RoleState::Looking(e) = &self.role {
            self.logical_clock = e.logical_clock();
        }
        self.current_vote = d.vote;
        if d.leader == self.core.id {
            let mut l = Leader::start(&self.core);
            out.push(Command::RoleChanged(Role::Leading { epoch: None, established: false }));
            // A one-voter ensemble completes discovery at once.
            l.progress(&mut self.core, out);
            self.role = RoleState::Leading(Box::new(l));
        } else {
            let observer = !self.core.cfg.is_voter(self.core.id);
            let l = Learner::start(&self.core, d.leader, observer, out);
            self.role = RoleState::Learning(Box::new(l));
            out.push(Command::RoleChanged(self.role()));
        }
    }

    /// Leaves the current role's connections.
    fn leave_role(&mut self, out: &mut Vec<Command>) {
        match &self.role {
            RoleState::Leading(l) => {
                for (sid, h) in &l.learners {
                    out.push(Command::Disconnect { peer: *sid, conn: Some(h.conn) });
                }
            }
            RoleState::Learning(l) => {
                out.push(Command::Disconnect { peer: l.leader, conn: l.leader_conn })
            }
            RoleState::Looking(_) => {}
        }
        self.core.next = None;
    }

    /// After a reconfig: follow (or lead, or observe) `leader` at once, as the reconfig
    /// decided, without an election. A peer no longer in the membership looks for a leader.
    fn hand_off(&mut self, leader: Sid, out: &mut Vec<Command>) {
        if !self.core.cfg.is_member(self.core.id) || !self.core.cfg.is_voter(leader) {
            self.become_looking(out);
            return;
        }
        self.leave_role(out);
        let vote = Vote {
            leader: leader as i64,
            zxid: self.core.last_zxid().to_wire(),
            election_epoch: self.logical_clock,
            peer_epoch: i64::from(self.core.current_epoch),
        };
        self.decided(Decision { leader, vote }, out);
    }

    fn become_looking(&mut self, out: &mut Vec<Command>) {
        if let RoleState::Looking(_) = self.role {
            return;
        }
        self.leave_role(out);
        let mut sends = Vec::new();
        self.restart_election(&mut sends);
        out.push(Command::RoleChanged(Role::Looking));
        out.extend(sends);
    }

    /// Starts an election (again, if the membership changed while looking).
    fn restart_election(&mut self, out: &mut Vec<Command>) {
        let mut sends = Vec::new();
        let e = Election::start(
            &self.core.cfg,
            self.core.id,
            self.logical_clock,
            self.core.last_zxid(),
            self.core.current_epoch,
            &mut sends,
        );
        self.logical_clock = e.logical_clock();
        self.current_vote = e.proposal();
        self.role = RoleState::Looking(e);
        out.extend(sends.into_iter().map(|(to, n)| Command::SendNotification { to, n }));
    }
}

// ---------------------------------------------------------------------------------------------
// Leader

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HPhase {
    /// Connected, no FOLLOWERINFO yet.
    Connected,
    /// FOLLOWERINFO received; LEADERINFO sent if the epoch is decided.
    Info { leaderinfo_sent: bool },
    /// ACKEPOCH received; waiting for the epoch quorum before syncing.
    EpochAcked { last_zxid: Zxid },
    /// Sync sent, NEWLEADER sent; waiting for its ack.
    Syncing,
    /// NEWLEADER acked but the leader is not established yet.
    NewLeaderAcked,
    /// UPTODATE sent: in broadcast.
    Active,
}

#[derive(Debug)]
struct Handler {
    /// The connection this learner is on.
    conn: ConnId,
    observer: bool,
    phase: HPhase,
    last_heard: u64,
    /// COMMITs made while the learner syncs (after its NEWLEADER, before its UPTODATE): sent
    /// right after UPTODATE, in order. ZooKeeper 3.8.0's learner logs the proposals it got
    /// before NEWLEADER and forgets them, so a COMMIT of one before UPTODATE finds nothing and
    /// throws (ZOOKEEPER-4394, fixed in 3.8.1; its own leader triggers it too), and a COMMIT
    /// of a later proposal before UPTODATE is applied at UPTODATE ahead of the earlier ones'
    /// (it exits: "Committing zxid … but next pending txn …").
    held: Vec<QuorumPacket>,
}

impl Handler {
    /// Receives PROPOSAL / COMMIT / INFORM.
    fn forwarding(&self) -> bool {
        matches!(self.phase, HPhase::Syncing | HPhase::NewLeaderAcked | HPhase::Active)
    }
}

#[derive(Debug)]
struct Proposal {
    data: Bytes,
    acks: Acks,
}

/// The servers that acked a proposal: ids below 64 (every usual ensemble) as bits, any other
/// in a vector. No allocation per proposal in the usual case: a set's node per proposal cost
/// a tenth of a standalone server's commit.
#[derive(Debug, Default)]
struct Acks {
    low: u64,
    high: Vec<Sid>,
}

impl Acks {
    /// Adds `sid`; true if it was not there.
    fn insert(&mut self, sid: Sid) -> bool {
        if sid < 64 {
            let had = self.low & (1 << sid) != 0;
            self.low |= 1 << sid;
            return !had;
        }
        if self.high.contains(&sid) {
            return false;
        }
        self.high.push(sid);
        true
    }

    fn remove(&mut self, sid: &Sid) {
        if *sid < 64 {
            self.low &= !(1 << *sid);
        } else {
            self.high.retain(|s| s != sid);
        }
    }

    fn contains(&self, sid: Sid) -> bool {
        if sid < 64 {
            self.low & (1 << sid) != 0
        } else {
            self.high.contains(&sid)
        }
    }

    /// True if they are a majority of `voters`.
    fn is_quorum(&self, voters: &BTreeSet<Sid>) -> bool {
        let mut low = self.low;
        let mut n = self.high.iter().filter(|s| voters.contains(s)).count();
        while low != 0 {
            n += usize::from(voters.contains(&Sid::from(low.trailing_zeros())));
            low &= low - 1;
        }
        2 * n > voters.len()
    }
}

#[derive(Debug)]
struct Leader {
    started: u64,
    /// The decided new epoch.
    epoch: Option<u32>,
    proposed_epoch: u32,
    connecting: BTreeSet<Sid>,
    electing: BTreeSet<Sid>,
    epoch_quorum: bool,
    newleader_acks: BTreeSet<Sid>,
    established: bool,
    /// (currentEpoch, last zxid) when leadership started: learners more recent are refused.
    summary: (u32, Zxid),
    learners: BTreeMap<Sid, Handler>,
    outstanding: BTreeMap<Zxid, Proposal>,
    last_proposed: Zxid,
    last_committed: Zxid,
    /// Sync requests waiting for a zxid to commit: (zxid, requester; None = local client).
    pending_syncs: VecDeque<(Zxid, Option<Sid>)>,
    /// The global sessions (the one tracker of the ensemble).
    sessions: SessionTracker,
    /// (last, smallest, largest) size of a proposal's txn, for `mntr`.
    proposal_sizes: Option<(i64, i64, i64)>,
    /// Which server each session's requests must come from (ZooKeeper's session owner): the
    /// one that created it or last revalidated it, or the first to send a request for it.
    owners: BTreeMap<i64, Sid>,
    /// A reconfig committed and named another leader: this one commits nothing more
    /// (ZooKeeper's `allowedToCommit = false`) and hands over once its learners have left it
    /// for that leader (each does on the COMMITANDACTIVATE; closing their connections first
    /// could lose it on the way), or after syncLimit ticks: (leader, since).
    handoff: Option<Sid>,
    handoff_since: u64,
}

impl Leader {
    fn start(core: &Core) -> Leader {
        let mut connecting = BTreeSet::new();
        connecting.insert(core.id);
        Leader {
            started: core.now,
            epoch: None,
            proposed_epoch: core.accepted_epoch + 1,
            connecting,
            electing: BTreeSet::new(),
            epoch_quorum: false,
            newleader_acks: BTreeSet::new(),
            established: false,
            summary: (core.current_epoch, core.last_zxid()),
            learners: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            last_proposed: Zxid::ZERO,
            last_committed: core.last_zxid(),
            pending_syncs: VecDeque::new(),
            proposal_sizes: None,
            owners: BTreeMap::new(),
            sessions: SessionTracker::new(core.cfg.tick_ms),
            handoff: None,
            handoff_since: 0,
        }
    }

    /// Moves discovery forward as far as the collected acks allow.
    fn progress(&mut self, core: &mut Core, out: &mut Vec<Command>) -> Next {
        if self.epoch.is_none() && core.cfg.is_quorum(&self.connecting) {
            let epoch = self.proposed_epoch;
            self.epoch = Some(epoch);
            core.next = core.next_for_leader(make_zxid(epoch, 0));
            core.accepted_epoch = epoch;
            out.push(Command::PersistAcceptedEpoch(epoch));
            let waiting: Vec<Sid> = self
                .learners
                .iter()
                .filter(|(_, h)| h.phase == HPhase::Info { leaderinfo_sent: false })
                .map(|(s, _)| *s)
                .collect();
            for sid in waiting {
                self.send_leaderinfo(sid, out);
            }
        }
        let Some(epoch) = self.epoch else { return Next::Stay };
        // The leader acks its own epoch once its history is durable, and is always part of the
        // epoch quorum (as Leader.lead's own waitForEpochAck).
        if !self.electing.contains(&core.id) && core.last_durable >= core.last_zxid() {
            self.electing.insert(core.id);
        }
        // The epoch's quorum, like NEWLEADER's, is of both memberships when a reconfig is
        // pending (`next`). ZooKeeper's waitForEpochAck counts the active voters only; then a
        // leader holding a proposal that committed elsewhere could take an epoch quorum of
        // the old voters none of whom holds what the new ones committed after it, and the
        // followers that took its epoch at NEWLEADER could later win an election on it and
        // truncate those txns. Observers ack epochs too and count where they vote.
        if !self.epoch_quorum
            && self.electing.contains(&core.id)
            && core.quorums(None, |v| majority(v, &self.electing))
        {
            self.epoch_quorum = true;
            core.current_epoch = epoch;
            out.push(Command::PersistCurrentEpoch(epoch));
            self.newleader_acks.insert(core.id);
            let acked: Vec<(Sid, Zxid)> = self
                .learners
                .iter()
                .filter_map(|(s, h)| match h.phase {
                    HPhase::EpochAcked { last_zxid } => Some((*s, last_zxid)),
                    _ => None,
                })
                .collect();
            for (sid, last) in acked {
                self.sync_learner(core, sid, last, out);
            }
        }
        if self.epoch_quorum
            && !self.established
            && core.quorums(None, |v| majority(v, &self.newleader_acks))
        {
            self.establish(core, epoch, out);
        }
        Next::Stay
    }

    fn send_leaderinfo(&mut self, sid: Sid, out: &mut Vec<Command>) {
        let epoch = self.epoch.expect("decided");
        if let Some(h) = self.learners.get_mut(&sid) {
            h.phase = HPhase::Info { leaderinfo_sent: true };
        }

        Core::send(
            out,
            sid,
            QuorumPacket::with_data(
                PacketType::LeaderInfo,
                make_zxid(epoch, 0).to_wire(),
                encode_i32(PROTOCOL_VERSION),
            ),
        );
    }

    fn sync_learner(&mut self, core: &mut Core, sid: Sid, peer_last: Zxid, out: &mut Vec<Command>) {
        let epoch = self.epoch.expect("decided");
        let sync_point = if self.established { self.last_committed } else { core.last_zxid() };
        let plan = plan_sync(peer_last, sync_point, &core.history);
        out.push(Command::SyncStarted { learner: sid, plan: plan.clone() });
        let diff_from = match plan {
            SyncPlan::Diff { from } => {
                Core::send(out, sid, QuorumPacket::new(PacketType::Diff, sync_point.to_wire()));
                Some(from)
            }
            SyncPlan::TruncDiff { to } => {
                Core::send(out, sid, QuorumPacket::new(PacketType::Trunc, to.to_wire()));
                Some(to)
            }
            SyncPlan::Trunc { to } => {
                Core::send(out, sid, QuorumPacket::new(PacketType::Trunc, to.to_wire()));
                None
            }
            SyncPlan::Snap => {
                Core::send(out, sid, QuorumPacket::new(PacketType::Snap, sync_point.to_wire()));
                out.push(Command::SendSnapshot { to: sid, zxid: sync_point });
                None
            }
        };
        if let Some(from) = diff_from {
            for (z, data) in core.history.entries() {
                if *z > from && *z <= sync_point {
                    Core::send(
                        out,
                        sid,
                        QuorumPacket::with_data(PacketType::Proposal, z.to_wire(), data.clone()),
                    );
                    Core::send(out, sid, QuorumPacket::new(PacketType::Commit, z.to_wire()));
                }
            }
        }
        let observer = self.learners.get(&sid).is_some_and(|h| h.observer);
        if !observer {
            for (z, p) in &self.outstanding {
                Core::send(
                    out,
                    sid,
                    QuorumPacket::with_data(PacketType::Proposal, z.to_wire(), p.data.clone()),
                );
            }
        }
        // NEWLEADER carries the configuration text, as ZooKeeper's does (null without one):
        // before establishment, the one this leader activates once established, if any; after
        // it, the active one. (Not a reconfig proposed since: a learner activates NEWLEADER's
        // membership at UPTODATE, and one not yet committed would spread from there through
        // notifications and let an election count a quorum of voters that never agreed to it.
        // The simulator found that; the learner gets the reconfig txn with the outstanding
        // proposals and activates it at its COMMITANDACTIVATE.)
        let mut newleader = QuorumPacket::new(PacketType::NewLeader, make_zxid(epoch, 0).to_wire());
        let pending = core.next.as_ref().filter(|_| !self.established);
        let text = pending.map_or(&core.cfg.config_text, |n| &n.text);
        if !text.is_empty() {
            newleader.data = Some(text.clone());
        }
        Core::send(out, sid, newleader);
        if let Some(h) = self.learners.get_mut(&sid) {
            h.phase = HPhase::Syncing;
            h.held.clear();
        }
    }

    fn establish(&mut self, core: &mut Core, epoch: u32, out: &mut Vec<Command>) {
        self.established = true;
        self.last_committed = core.last_zxid();
        self.last_proposed = make_zxid(epoch, 0);
        out.push(Command::Established { epoch });
        out.push(Command::Commit(self.last_committed));
        // The membership NEWLEADER carried is committed with the history: active now. A
        // leader it leaves out hands over to a voter of it that acked NEWLEADER.
        if let Some(next) = core.next.take() {
            core.activate(&next.text, out);
            if !core.cfg.is_voter(core.id) {
                self.handoff = core
                    .cfg
                    .voters
                    .iter()
                    .find(|s| **s != core.id && self.newleader_acks.contains(s))
                    .copied();
                self.handoff_since = core.now;
            }
        }
        out.push(Command::RoleChanged(Role::Leading { epoch: Some(epoch), established: true }));
        for (sid, h) in self.learners.iter_mut() {
            if h.phase == HPhase::NewLeaderAcked {
                h.phase = HPhase::Active;
                Core::send(out, *sid, QuorumPacket::new(PacketType::UpToDate, -1));
                for p in std::mem::take(&mut h.held) {
                    Core::send(out, *sid, p);
                }
            }
        }
    }

    fn on_event(&mut self, core: &mut Core, ev: Event, out: &mut Vec<Command>) -> Next {
        match ev {
            Event::Connected { peer, conn } => {
                if core.cfg.is_member(peer) && peer != core.id {
                    let observer = !core.cfg.is_voter(peer);
                    let h = Handler {
                        conn,
                        observer,
                        phase: HPhase::Connected,
                        last_heard: core.now,
                        held: Vec::new(),
                    };
                    // A learner that reconnects starts over on its new connection.
                    if let Some(old) = self.learners.insert(peer, h) {
                        if old.conn != conn {
                            out.push(Command::Disconnect { peer, conn: Some(old.conn) });
                        }
                    }
                    // Its earlier acks no longer count: the sync it is about to go through may
                    // truncate what it acked (a learner ahead of the sync point is TRUNCated,
                    // and re-acks the outstanding proposals once they are durable again). A
                    // stale ack would let a proposal commit while durable on fewer than a
                    // quorum.
                    for p in self.outstanding.values_mut() {
                        p.acks.remove(&peer);
                    }
                } else {
                    out.push(Command::Disconnect { peer, conn: Some(conn) });
                }
                Next::Stay
            }
            Event::Disconnected { peer, conn } => {
                if conn.is_some() && self.learners.get(&peer).map(|h| h.conn) == conn {
                    self.learners.remove(&peer);
                }
                Next::Stay
            }
            // Only the packets of a learner's current connection count: one still buffered
            // from a connection it replaced (an ACK of what the new sync may truncate, say)
            // is stale.
            Event::Packet { from, conn, packet } => {
                if self.learners.get(&from).map(|h| h.conn) == Some(conn) {
                    self.on_packet(core, from, packet, out)
                } else {
                    Next::Stay
                }
            }
            Event::Propose { zxid, data } => {
                // A proposal prepared before this peer's role or epoch changed is stale: dropped.
                if !self.established || Some(epoch_of(zxid)) != self.epoch {
                    return Next::Stay;
                }
                // Within the epoch the runtime must propose exactly the next zxid; anything
                // else is a bug of the runtime that would corrupt the history, so it stops.
                assert_eq!(
                    zxid,
                    self.last_proposed.next(),
                    "Propose {zxid:#x}, but the next zxid of epoch {:?} is {:#x}",
                    self.epoch,
                    self.last_proposed.next()
                );
                assert!(
                    self.outstanding.len() < core.cfg.outstanding_max,
                    "Propose {zxid:#x} with {} proposals outstanding (next_zxid said wait)",
                    self.outstanding.len()
                );
                self.last_proposed = zxid;
                core.counters.proposals += 1;
                core.history.push(zxid, data.clone());
                out.push(Command::AppendTxns(vec![(zxid, data.clone())]));
                for (sid, h) in &self.learners {
                    if h.forwarding() && !h.observer {
                        Core::send(
                            out,
                            *sid,
                            QuorumPacket::with_data(
                                PacketType::Proposal,
                                zxid.to_wire(),
                                data.clone(),
                            ),
                        );
                    }
                }
                let size = data.len() as i64;
                self.proposal_sizes = match self.proposal_sizes {
                    None => Some((size, size, size)),
                    Some((_, min, max)) => Some((size, min.min(size), max.max(size))),
                };
                if core.cfg.reconfig_enabled && core.next.is_none() {
                    // A reconfig txn: from it on, proposals need a quorum of both memberships.
                    if let Some(text) = reconfig_text(&data) {
                        core.next = NextConfig::parse(zxid, text);
                        core.logged.clone_from(&core.next);
                    }
                }
                self.outstanding.insert(zxid, Proposal { data, acks: Acks::default() });
                Next::Stay
            }
            Event::ClientRequest { request } => {
                if !self.established {
                    return Next::Stay;
                }
                if request.op == OP_SYNC {
                    if self.outstanding.is_empty() {
                        out.push(Command::SyncDone);
                    } else {
                        self.pending_syncs.push_back((self.last_proposed, None));
                    }
                } else if self.owner_ok(&request, core.id) {
                    out.push(Command::Request { from: core.id, request });
                } else {
                    out.push(Command::SessionMoved { from: core.id, request });
                }
                Next::Stay
            }
            Event::TouchSession { session_id, .. } => {
                self.sessions.touch(session_id, core.now);
                Next::Stay
            }
            Event::Revalidate { session_id, .. } => {
                let valid = self.sessions.touch(session_id, core.now);
                if valid {
                    self.owners.insert(session_id, core.id);
                }
                out.push(Command::Revalidated { session_id, valid });
                Next::Stay
            }
            Event::SessionCreated { session_id, timeout } => {
                self.sessions.add(session_id, timeout, core.now);
                Next::Stay
            }
            Event::SessionClosed { session_id } => {
                self.sessions.remove(session_id);
                self.owners.remove(&session_id);
                Next::Stay
            }
            _ => Next::Stay,
        }
    }

    fn on_packet(
        &mut self,
        core: &mut Core,
        from: Sid,
        p: QuorumPacket,
        out: &mut Vec<Command>,
    ) -> Next {
        let Some(h) = self.learners.get_mut(&from) else {
            return Next::Stay;
        };
        h.last_heard = core.now;
        let (phase, observer) = (h.phase, h.observer);
        match (p.kind, phase) {
            (PacketType::FollowerInfo | PacketType::ObserverInfo, HPhase::Connected) => {
                // A learner with a later activated membership than this leader's is refused
                // ("Follower is ahead of the leader (has a later activated configuration)").
                let ok = LearnerInfo::decode(p.payload()).is_ok_and(|li| {
                    li.server_id as u64 == from
                        && li.config_version as u64 <= core.cfg.config_version
                });
                if !ok || (p.kind == PacketType::ObserverInfo) != observer {
                    self.drop_learner(from, out);
                    return Next::Stay;
                }
                self.set_phase(from, HPhase::Info { leaderinfo_sent: false });
                let learner_accepted = epoch_of(p.zxid());
                if self.epoch.is_none() {
                    // Every learner's accepted epoch raises the one proposed (getEpochToPropose):
                    // an observer that votes in a pending membership must be able to ack it.
                    self.proposed_epoch = self.proposed_epoch.max(learner_accepted + 1);
                    if !observer {
                        self.connecting.insert(from);
                    }
                    return self.progress(core, out);
                }
                self.send_leaderinfo(from, out);
                Next::Stay
            }
            (PacketType::AckEpoch, HPhase::Info { leaderinfo_sent: true }) => {
                let Ok(ce) = decode_i32(p.payload()) else {
                    self.drop_learner(from, out);
                    return Next::Stay;
                };
                let last = p.zxid();
                if ce != -1 {
                    if (ce as u32, last) > self.summary && !self.epoch_quorum {
                        // "Follower is ahead of the leader": this leader must not lead it.
                        self.drop_learner(from, out);
                        return Next::Stay;
                    }
                    self.electing.insert(from);
                }
                self.set_phase(from, HPhase::EpochAcked { last_zxid: last });
                if self.epoch_quorum {
                    self.sync_learner(core, from, last, out);
                    Next::Stay
                } else {
                    self.progress(core, out)
                }
            }
            (PacketType::Ack, HPhase::Syncing) if counter_of(p.zxid()) == 0 => {
                if Some(epoch_of(p.zxid())) != self.epoch {
                    self.drop_learner(from, out);
                    return Next::Stay;
                }
                if self.established {
                    self.set_phase(from, HPhase::Active);
                    Core::send(out, from, QuorumPacket::new(PacketType::UpToDate, -1));
                    let held = self.learners.get_mut(&from).map(|h| std::mem::take(&mut h.held));
                    for p in held.unwrap_or_default() {
                        Core::send(out, from, p);
                    }
                    return Next::Stay;
                }
                self.set_phase(from, HPhase::NewLeaderAcked);
                // An observer's ack counts where it votes: in the membership NEWLEADER carries
                // (a proposed reconfig making it a voter), as in ZooKeeper's Leader.
                self.newleader_acks.insert(from);
                self.progress(core, out)
            }
            (PacketType::Ack, HPhase::Syncing | HPhase::NewLeaderAcked | HPhase::Active) => {
                let zxid = p.zxid();
                if counter_of(zxid) == 0 || observer {
                    return Next::Stay;
                }
                if let Some(prop) = self.outstanding.get_mut(&zxid) {
                    prop.acks.insert(from);
                    self.try_commit(core, out);
                }
                Next::Stay
            }
            (PacketType::Ping, _) => {
                if let Ok(touches) = decode_touches(p.payload()) {
                    for (id, _) in touches {
                        self.sessions.touch(id, core.now);
                    }
                }
                Next::Stay
            }
            (PacketType::Request, HPhase::Active) => {
                let Ok(request) = ForwardedRequest::from_packet(&p) else {
                    return Next::Stay;
                };
                if request.op == OP_SYNC {
                    if self.outstanding.is_empty() {
                        Core::send(out, from, QuorumPacket::new(PacketType::Sync, 0));
                    } else {
                        self.pending_syncs.push_back((self.last_proposed, Some(from)));
                    }
                } else if self.owner_ok(&request, from) {
                    out.push(Command::Request { from, request });
                } else {
                    out.push(Command::SessionMoved { from, request });
                }
                Next::Stay
            }
            (PacketType::Revalidate, _) => {
                core.counters.revalidations += 1;
                if let Ok((session_id, _)) = decode_revalidate(p.payload()) {
                    let valid = self.sessions.touch(session_id, core.now);
                    if valid {
                        // The session moved to that server: requests from its old one are
                        // answered SESSIONMOVED from now on.
                        self.owners.insert(session_id, from);
                    }
                    Core::send(
                        out,
                        from,
                        QuorumPacket::with_data(
                            PacketType::Revalidate,
                            -1,
                            encode_revalidate_reply(session_id, valid),
                        ),
                    );
                }
                Next::Stay
            }
            _ => {
                // Out of order for this learner's phase: a protocol error on that connection.
                self.drop_learner(from, out);
                Next::Stay
            }
        }
    }

    /// ZooKeeper's session owner check (SessionTrackerImpl.checkSession): a request for a
    /// global session may come only from the server that owns it. createSession makes its
    /// sender the owner; so does the first request for a session nobody owns yet (after a
    /// change of leader); closeSession is not checked, nor are sessions the tracker does not
    /// know (local ones, or already gone: the txn's preparation answers those).
    fn owner_ok(&mut self, request: &ForwardedRequest, from: Sid) -> bool {
        match request.op {
            OP_CREATE_SESSION => {
                self.owners.insert(request.session_id, from);
                true
            }
            OP_CLOSE_SESSION => true,
            // Only global sessions have owners (a learner's local session is its own; not
            // recording them keeps this map as small as the session tracker).
            _ if !self.sessions.contains(request.session_id) => true,
            _ => *self.owners.entry(request.session_id).or_insert(from) == from,
        }
    }

    fn set_phase(&mut self, sid: Sid, phase: HPhase) {
        if let Some(h) = self.learners.get_mut(&sid) {
            h.phase = phase;
        }
    }

    fn drop_learner(&mut self, sid: Sid, out: &mut Vec<Command>) {
        let conn = self.learners.remove(&sid).map(|h| h.conn);
        out.push(Command::Disconnect { peer: sid, conn });
    }

    /// Commits every outstanding proposal, in order, that a quorum has acked: each is sent to
    /// the learners (COMMIT, or INFORM to observers), then one `Commit` of the last tells the
    /// runtime, then the syncs that waited for them are answered. A reconfig txn is sent as
    /// COMMITANDACTIVATE (INFORMANDACTIVATE) with the leader it designates, and its membership
    /// becomes the active one; if it designates another leader, nothing after it commits here.
    fn try_commit(&mut self, core: &mut Core, out: &mut Vec<Command>) {
        let mut before = self.last_committed;
        while self.handoff.is_none() {
            let Some(entry) = self.outstanding.first_entry() else { break };
            let zxid = *entry.key();
            let acked = if core.cfg.unsafe_commit_without_quorum {
                entry.get().acks.contains(core.id)
            } else {
                core.quorums(Some(zxid), |v| entry.get().acks.is_quorum(v))
            };
            if !acked {
                break;
            }
            let p = entry.remove();
            self.last_committed = zxid;
            core.counters.commits += 1;
            let next = core.next.as_ref().filter(|n| n.zxid == zxid).cloned();
            let Some(next) = next else {
                for (sid, h) in self.learners.iter_mut() {
                    if !h.forwarding() {
                        continue;
                    }
                    let packet = if h.observer {
                        QuorumPacket::with_data(PacketType::Inform, zxid.to_wire(), p.data.clone())
                    } else {
                        QuorumPacket::new(PacketType::Commit, zxid.to_wire())
                    };
                    if !h.observer && h.phase != HPhase::Active {
                        h.held.push(packet);
                    } else {
                        Core::send(out, *sid, packet);
                    }
                }
                continue;
            };
            let designated = self.designated_leader(core, &next, zxid, &p.acks);
            let sid_bytes = (designated as i64).to_be_bytes();
            for (sid, h) in self.learners.iter_mut() {
                if !h.forwarding() {
                    continue;
                }
                let packet = if h.observer {
                    let mut data = Vec::with_capacity(8 + p.data.len());
                    data.extend_from_slice(&sid_bytes);
                    data.extend_from_slice(&p.data);
                    QuorumPacket::with_data(
                        PacketType::InformAndActivate,
                        zxid.to_wire(),
                        Bytes::from(data),
                    )
                } else {
                    QuorumPacket::with_data(
                        PacketType::CommitAndActivate,
                        zxid.to_wire(),
                        Bytes::copy_from_slice(&sid_bytes),
                    )
                };
                if !h.observer && h.phase != HPhase::Active {
                    h.held.push(packet);
                } else {
                    Core::send(out, *sid, packet);
                }
            }
            self.committed_to(zxid, out);
            before = zxid;
            core.activate(&next.text, out);
            if designated != core.id {
                self.handoff = Some(designated);
                self.handoff_since = core.now;
            }
        }
        if self.last_committed != before {
            self.committed_to(self.last_committed, out);
        }
    }

    /// Hands over to the designated leader if the learners have left (or syncLimit passed).
    fn hand_over_now(&self, core: &Core) -> Next {
        let Some(leader) = self.handoff else { return Next::Stay };
        let left = self.learners.values().all(|h| !h.forwarding());
        if left || core.now - self.handoff_since > u64::from(core.cfg.sync_limit) {
            Next::HandOff(leader)
        } else {
            Next::Stay
        }
    }

    /// Tells the runtime everything up to `zxid` is committed, and answers the syncs that
    /// waited for it.
    fn committed_to(&mut self, zxid: Zxid, out: &mut Vec<Command>) {
        out.push(Command::Commit(zxid));
        while self.pending_syncs.front().is_some_and(|(z, _)| *z <= zxid) {
            match self.pending_syncs.pop_front().expect("non-empty").1 {
                None => out.push(Command::SyncDone),
                Some(sid) => Core::send(out, sid, QuorumPacket::new(PacketType::Sync, 0)),
            }
        }
    }

    /// The leader a committed reconfig designates (Leader.getDesignatedLeader): this one if it
    /// votes in the new membership; otherwise, of the new voters that acked the reconfig, the
    /// one that acked the most of the proposals after it (ties: the lowest id).
    fn designated_leader(&self, core: &Core, next: &NextConfig, zxid: Zxid, acks: &Acks) -> Sid {
        if next.voters.contains(&core.id) {
            return core.id;
        }
        let mut candidates: Vec<Sid> =
            next.voters.iter().copied().filter(|s| *s != core.id && acks.contains(*s)).collect();
        let mut best = candidates.first().copied().unwrap_or(core.id);
        for p in self.outstanding.range(zxid.next()..).map(|(_, p)| p) {
            candidates.retain(|s| p.acks.contains(*s));
            match candidates.first() {
                None => break,
                Some(s) => best = *s,
            }
            if candidates.len() == 1 {
                break;
            }
        }
        best
    }

    fn on_durable(&mut self, core: &mut Core, out: &mut Vec<Command>) -> Next {
        if !self.established {
            return self.progress(core, out);
        }
        let me = core.id;
        let durable = core.last_durable;
        let mut any = false;
        for (_, p) in self.outstanding.range_mut(..=durable) {
            any |= p.acks.insert(me);
        }
        if any {
            self.try_commit(core, out);
        }
        Next::Stay
    }

    fn on_tick(&mut self, core: &mut Core, out: &mut Vec<Command>) -> Next {
        let now = core.now;
        if !self.established {
            if now - self.started > u64::from(core.cfg.init_limit) {
                return Next::Looking;
            }
            return Next::Stay;
        }
        // Drop learners silent for too long (initLimit while syncing, syncLimit after).
        let stale: Vec<Sid> = self
            .learners
            .iter()
            .filter(|(_, h)| {
                let limit = if h.phase == HPhase::Active {
                    core.cfg.sync_limit
                } else {
                    core.cfg.init_limit
                };
                now - h.last_heard > u64::from(limit)
            })
            .map(|(s, _)| *s)
            .collect();
        for sid in stale {
            self.drop_learner(sid, out);
        }
        if self.handoff.is_some() {
            return self.hand_over_now(core);
        }
        let mut synced: BTreeSet<Sid> = self
            .learners
            .iter()
            .filter(|(_, h)| h.phase == HPhase::Active)
            .map(|(s, _)| *s)
            .collect();
        synced.insert(core.id);
        if !core.quorums(None, |v| majority(v, &synced)) {
            // "Not sufficient followers synced": give up leadership.
            return Next::Looking;
        }
        for (sid, h) in &self.learners {
            if h.forwarding() {
                Core::send(
                    out,
                    *sid,
                    QuorumPacket::new(PacketType::Ping, self.last_proposed.to_wire()),
                );
            }
        }
        for session_id in self.sessions.expire(now) {
            out.push(Command::ExpireSession { session_id });
        }
        Next::Stay
    }
}

// ---------------------------------------------------------------------------------------------
// Learner

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LPhase {
    Connecting,
    WaitLeaderInfo,
    WaitSync,
    Syncing,
    /// NEWLEADER processed (acked or waiting for durability); UPTODATE not yet received.
    AfterNewLeader,
    Active,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SyncBase {
    Diff,
    Trunc(Zxid),
    Snap(Zxid),
}

#[derive(Debug)]
struct Learner {
    leader: Sid,
    /// The connection to the leader, once up.
    leader_conn: Option<ConnId>,
    observer: bool,
    phase: LPhase,
    started: u64,
    last_heard: u64,
    new_epoch: u32,
    base: Option<SyncBase>,
    snap_body: Option<ReceivedSnapshot>,
    staged: Vec<(Zxid, Bytes)>,
    staged_commit: Zxid,
    /// The synced history committed up to here, applied once UPTODATE arrives (the leader is
    /// established then; before it, its history is not committed yet).
    commit_at_uptodate: Zxid,
    /// Waiting for the log to be durable up to this zxid before acking NEWLEADER.
    newleader_wait: Option<Zxid>,
    pending_acks: VecDeque<Zxid>,
    touches: Touches,
    /// This sync rebuilds the state from nothing (see `Core::reset_for`).
    reset: bool,
    /// The last attempt to connect to the leader failed: retried at the next election tick
    /// (with an election clock), as ZooKeeper's learner retries 100 ms later.
    retry_connect: bool,
    /// Attempts so far to connect to the leader ([`CONNECT_TRIES`] at most).
    connect_tries: u32,
    /// The memberships of reconfig txns received and not yet activated, by zxid (at most
    /// [`CONFIGS_MAX`]: one reconfig is outstanding at a time).
    configs: BTreeMap<Zxid, Bytes>,
    /// The membership NEWLEADER carried, activated at UPTODATE.
    newleader_config: Option<Bytes>,
}

/// Reconfig txns a learner keeps waiting for their activation.
const CONFIGS_MAX: usize = 8;

/// Attempts a learner makes to connect to the leader it elected before going back to an
/// election, as ZooKeeper's `Learner.connectToLeader` (5 tries, 100 ms apart, within
/// initLimit): a peer the election settled on that ended up following another (FLE's
/// finalizeWait race) refuses the connection, and waiting out initLimit would leave this
/// server unavailable for seconds (initLimit × tickTime) where ZooKeeper's is back in an
/// election at once.
const CONNECT_TRIES: u32 = 5;

impl Learner {
    fn start(core: &Core, leader: Sid, observer: bool, out: &mut Vec<Command>) -> Learner {
        out.push(Command::Connect { to: leader });
        Learner {
            leader,
            leader_conn: None,
            observer,
            phase: LPhase::Connecting,
            started: core.now,
            last_heard: core.now,
            new_epoch: 0,
            base: None,
            snap_body: None,
            staged: Vec::new(),
            staged_commit: Zxid::ZERO,
            commit_at_uptodate: Zxid::ZERO,
            newleader_wait: None,
            pending_acks: VecDeque::new(),
            touches: Touches::default(),
            reset: false,
            retry_connect: false,
            connect_tries: 1,
            configs: BTreeMap::new(),
            newleader_config: None,
        }
    }

    /// Notes the membership of a reconfig txn the leader sent (activated at its
    /// COMMITANDACTIVATE).
    fn note_config(&mut self, core: &mut Core, zxid: Zxid, txn: &[u8], out: &mut Vec<Command>) {
        if !core.cfg.reconfig_enabled {
            return;
        }
        if let Some(text) = reconfig_text(txn) {
            if self.configs.len() >= CONFIGS_MAX {
                self.configs.pop_first();
            }
            core.log_reconfig(zxid, text.clone(), out);
            self.configs.insert(zxid, text);
        }
    }

    /// Activates the membership `text`. `designated`: the leader a COMMITANDACTIVATE named
    /// (a change of leader or of this peer's role hands over to it at once); `None` (NEWLEADER's
    /// membership): a change that leaves this learner's leader out, or its role changed, goes
    /// back to an election. A follower left out of the membership stays (a non-voting
    /// follower, as ZooKeeper's); an observer left out looks for a leader.
    fn activate(
        &mut self,
        core: &mut Core,
        text: &Bytes,
        designated: Option<Sid>,
        out: &mut Vec<Command>,
    ) -> Next {
        if core.activate(text, out).is_none() {
            return Next::Stay;
        }
        let me = core.id;
        let role_change = if core.cfg.is_voter(me) {
            self.observer
        } else if core.cfg.observers.contains(&me) {
            !self.observer
        } else {
            self.observer
        };
        match designated {
            Some(d) if role_change || d != self.leader => Next::HandOff(d),
            None if role_change || !core.cfg.is_voter(self.leader) => Next::Looking,
            _ => Next::Stay,
        }
    }

    /// A tick of the election clock: a failed connection attempt is retried.
    fn on_election_tick(&mut self, core: &Core, out: &mut Vec<Command>) -> Next {
        if self.phase == LPhase::Connecting && self.retry_connect {
            if core.now - self.started > u64::from(core.cfg.init_limit)
                || self.connect_tries >= CONNECT_TRIES
            {
                return Next::Looking;
            }
            self.retry_connect = false;
            self.connect_tries += 1;
            out.push(Command::Connect { to: self.leader });
        }
        Next::Stay
    }

    fn staged_last(&self, core: &Core) -> Zxid {
        if let Some((z, _)) = self.staged.last() {
            return *z;
        }
        match self.base {
            Some(SyncBase::Trunc(t)) => t,
            Some(SyncBase::Snap(s)) => s,
            _ if self.reset => Zxid::ZERO,
            _ => core.last_zxid(),
        }
    }

    fn on_event(&mut self, core: &mut Core, ev: Event, out: &mut Vec<Command>) -> Next {
        match ev {
            Event::Connected { peer, conn }
                if peer == self.leader && self.phase == LPhase::Connecting =>
            {
                self.leader_conn = Some(conn);
                self.phase = LPhase::WaitLeaderInfo;
                self.last_heard = core.now;
                let kind =
                    if self.observer { PacketType::ObserverInfo } else { PacketType::FollowerInfo };
                let li = LearnerInfo {
                    server_id: core.id as i64,
                    protocol_version: PROTOCOL_VERSION,
                    config_version: core.cfg.config_version as i64,
                };
                Core::send(
                    out,
                    peer,
                    QuorumPacket::with_data(
                        kind,
                        make_zxid(core.accepted_epoch, 0).to_wire(),
                        li.encode(),
                    ),
                );
                Next::Stay
            }
            Event::Connected { peer, conn } => {
                if peer != self.leader {
                    out.push(Command::Disconnect { peer, conn: Some(conn) });
                    Next::Stay
                } else if Some(conn) == self.leader_conn {
                    Next::Stay
                } else if self.phase == LPhase::WaitLeaderInfo {
                    // A second attempt of ours came up after the first (retries raced): nothing
                    // was synced yet; the first one stays, this one goes.
                    out.push(Command::Disconnect { peer, conn: Some(conn) });
                    Next::Stay
                } else {
                    // Another connection with the leader replaced ours mid-session: what this
                    // session synced is tied to the old one, so start over.
                    out.push(Command::Disconnect { peer, conn: Some(conn) });
                    Next::Looking
                }
            }
            Event::Disconnected { peer, conn } if peer == self.leader => {
                match conn {
                    // A connection attempt failed: retried on the next tick until initLimit.
                    None if self.phase == LPhase::Connecting => {
                        self.retry_connect = true;
                        Next::Stay
                    }
                    // Closed before LEADERINFO: the server was not leading yet (it had not
                    // finished its own election), as a refused connection; retried likewise.
                    Some(c)
                        if Some(c) == self.leader_conn && self.phase == LPhase::WaitLeaderInfo =>
                    {
                        self.leader_conn = None;
                        self.phase = LPhase::Connecting;
                        self.retry_connect = true;
                        Next::Stay
                    }
                    Some(c) if Some(c) == self.leader_conn => Next::Looking,
                    // News of an earlier connection, or of a failed attempt after ours is up.
                    _ => Next::Stay,
                }
            }
            Event::Packet { from, conn, packet } if from == self.leader => {
                if Some(conn) == self.leader_conn {
                    self.on_packet(core, packet, out)
                } else {
                    // Still buffered from an earlier connection with the leader: a PROPOSAL
                    // of it taken now would be staged beside the new sync's, and the leader's
                    // re-sent copy dropped as a duplicate.
                    Next::Stay
                }
            }
            Event::Packet { from, conn, .. } => {
                out.push(Command::Disconnect { peer: from, conn: Some(conn) });
                Next::Stay
            }
            Event::Snapshot { from, conn, .. }
                if from == self.leader && Some(conn) != self.leader_conn =>
            {
                Next::Stay
            }
            Event::Snapshot { from, body, .. } if from == self.leader => {
                if self.phase == LPhase::Syncing
                    && matches!(self.base, Some(SyncBase::Snap(_)))
                    && self.snap_body.is_none()
                    && body.bytes() <= core.cfg.snapshot_bytes_max as u64
                {
                    self.snap_body = Some(body);
                    Next::Stay
                } else {
                    Next::Looking
                }
            }
            Event::ClientRequest { request } if self.phase == LPhase::Active => {
                Core::send(out, self.leader, request.to_packet());
                Next::Stay
            }
            Event::TouchSession { session_id, timeout } => {
                self.touches.touch(session_id, timeout);
                Next::Stay
            }
            Event::Revalidate { session_id, timeout } if self.phase == LPhase::Active => {
                Core::send(
                    out,
                    self.leader,
                    QuorumPacket::with_data(
                        PacketType::Revalidate,
                        -1,
                        encode_revalidate(session_id, timeout),
                    ),
                );
                Next::Stay
            }
            _ => Next::Stay,
        }
    }

    fn on_packet(&mut self, core: &mut Core, p: QuorumPacket, out: &mut Vec<Command>) -> Next {
        if self.phase == LPhase::Connecting {
            // No connection of this session yet: the packet came on the one a hand-over
            // (a reconfig) just left, still on its way. Nothing in it is for this session.
            return Next::Stay;
        }
        self.last_heard = core.now;
        match (p.kind, self.phase) {
            (PacketType::LeaderInfo, LPhase::WaitLeaderInfo) => {
                let epoch = epoch_of(p.zxid());
                let ce = if epoch > core.accepted_epoch {
                    core.accepted_epoch = epoch;
                    out.push(Command::PersistAcceptedEpoch(epoch));
                    core.current_epoch as i32
                } else if epoch == core.accepted_epoch {
                    // Already acked an epoch this high: this ack must not count (Zab 1.0).
                    -1
                } else {
                    return Next::Looking;
                };
                self.new_epoch = epoch;
                self.phase = LPhase::WaitSync;
                // Pretending to have nothing hides only txns no leader could have committed: a
                // leader asked us to drop them (and every established leader holds every
                // committed txn). Never towards a leader of an epoch not newer than ours.
                self.reset = core.reset_pending && epoch > ce.max(0) as u32;
                let last = if self.reset { Zxid::ZERO } else { core.last_zxid() };
                Core::send(
                    out,
                    self.leader,
                    QuorumPacket::with_data(PacketType::AckEpoch, last.to_wire(), encode_i32(ce)),
                );
                Next::Stay
            }
            (PacketType::Diff | PacketType::Trunc | PacketType::Snap, LPhase::WaitSync) => {
                let z = p.zxid();
                // Everything up to the sync point is the leader's committed history (or, before
                // it establishes, the history it commits when it does): committed here at
                // UPTODATE, with the COMMITs of the sync. An empty DIFF carries no COMMIT.
                self.staged_commit = self.staged_commit.max(z);
                self.base = Some(match p.kind {
                    PacketType::Diff => SyncBase::Diff,
                    PacketType::Trunc => {
                        if z < core.snapshot_zxid || self.reset {
                            // The log starts at a snapshot after z: it cannot go back there. Ask
                            // for everything at the next sync (the durable state is untouched
                            // until then).
                            core.reset_pending = true;
                            return Next::Looking;
                        }
                        SyncBase::Trunc(z)
                    }
                    _ => SyncBase::Snap(z),
                });
                self.phase = LPhase::Syncing;
                Next::Stay
            }
            (PacketType::Proposal, LPhase::Syncing) => {
                let z = p.zxid();
                if z > self.staged_last(core) {
                    if self.staged.len() >= core.cfg.sync_txns_max {
                        // More than a leader's window and outstanding proposals can hold.
                        return Next::Looking;
                    }
                    self.note_config(core, z, p.payload(), out);
                    self.staged.push((z, p.into_payload()));
                }
                Next::Stay
            }
            (PacketType::Commit, LPhase::Syncing) => {
                self.staged_commit = self.staged_commit.max(p.zxid());
                Next::Stay
            }
            (PacketType::NewLeader, LPhase::Syncing) => self.on_newleader(core, p, out),
            (PacketType::Proposal, LPhase::AfterNewLeader | LPhase::Active) => {
                let z = p.zxid();
                core.counters.proposals_received += 1;
                if self.observer || z <= core.last_zxid() {
                    return Next::Stay;
                }
                self.note_config(core, z, p.payload(), out);
                core.history.push(z, p.payload().clone());
                out.push(Command::AppendTxns(vec![(z, p.into_payload())]));
                self.pending_acks.push_back(z);
                Next::Stay
            }
            (PacketType::Commit, LPhase::AfterNewLeader | LPhase::Active) => {
                let z = p.zxid();
                core.counters.commits_received += 1;
                if z > core.last_zxid() {
                    return Next::Looking;
                }
                out.push(Command::Commit(z));
                Next::Stay
            }
            (PacketType::Inform, LPhase::AfterNewLeader | LPhase::Active) if self.observer => {
                let z = p.zxid();
                core.counters.commits_received += 1;
                if z > core.last_zxid() {
                    core.history.push(z, p.payload().clone());
                    out.push(Command::AppendTxns(vec![(z, p.into_payload())]));
                }
                out.push(Command::Commit(z));
                Next::Stay
            }
            (PacketType::UpToDate, LPhase::AfterNewLeader) if self.newleader_wait.is_none() => {
                if let Some(text) = self.newleader_config.take() {
                    if let Next::Looking = self.activate(core, &text, None, out) {
                        return Next::Looking;
                    }
                }
                self.phase = LPhase::Active;
                let commit = std::mem::take(&mut self.commit_at_uptodate);
                if commit > Zxid::ZERO {
                    out.push(Command::Commit(commit));
                }
                let synced_by = match self.base {
                    Some(SyncBase::Trunc(_)) => "TRUNC",
                    Some(SyncBase::Snap(_)) => "SNAP",
                    _ => "DIFF",
                };
                out.push(Command::UpToDate { epoch: self.new_epoch, synced_by });
                out.push(Command::RoleChanged(if self.observer {
                    Role::Observing { leader: self.leader, serving: true }
                } else {
                    Role::Following { leader: self.leader, serving: true }
                }));
                Core::send(
                    out,
                    self.leader,
                    QuorumPacket::new(PacketType::Ack, make_zxid(self.new_epoch, 0).to_wire()),
                );
                Next::Stay
            }
            // As ZooKeeper's learner: PINGs are answered once in broadcast; during the sync a
            // leader waits for the NEWLEADER ack and no other packet (ZooKeeper's
            // LearnerHandler drops a learner whose next packet after NEWLEADER is not ACK).
            (PacketType::Ping, phase) if phase != LPhase::Active => Next::Stay,
            (PacketType::Ping, _) => {
                let touches = self.touches.take();
                Core::send(
                    out,
                    self.leader,
                    QuorumPacket::with_data(PacketType::Ping, p.zxid, encode_touches(&touches)),
                );
                Next::Stay
            }
            (PacketType::Sync, LPhase::Active) => {
                out.push(Command::SyncDone);
                Next::Stay
            }
            (PacketType::Revalidate, _) => {
                if let Ok((session_id, valid)) = decode_revalidate_reply(p.payload()) {
                    out.push(Command::Revalidated { session_id, valid });
                }
                Next::Stay
            }
            (PacketType::CommitAndActivate, LPhase::AfterNewLeader | LPhase::Active)
                if !self.observer =>
            {
                let z = p.zxid();
                let Some(designated) = leader_of(p.payload()) else { return Next::Looking };
                if z > core.last_zxid() {
                    return Next::Looking;
                }
                out.push(Command::Commit(z));
                if !core.cfg.reconfig_enabled {
                    out.push(Command::ReconfigIgnored { zxid: z, leader: self.leader });
                    return Next::Stay;
                }
                // Its txn came as a PROPOSAL (or in the sync); without it there is nothing to
                // activate: start over with this leader's NEWLEADER.
                let Some(text) = self.configs.remove(&z) else { return Next::Looking };
                self.configs.retain(|k, _| *k > z);
                self.activate(core, &text, Some(designated), out)
            }
            (PacketType::InformAndActivate, LPhase::AfterNewLeader | LPhase::Active)
                if self.observer =>
            {
                let z = p.zxid();
                let Some(designated) = leader_of(p.payload()) else { return Next::Looking };
                let txn = p.payload().slice(8..);
                if z > core.last_zxid() {
                    core.history.push(z, txn.clone());
                    out.push(Command::AppendTxns(vec![(z, txn.clone())]));
                }
                out.push(Command::Commit(z));
                if !core.cfg.reconfig_enabled {
                    out.push(Command::ReconfigIgnored { zxid: z, leader: self.leader });
                    return Next::Stay;
                }
                let Some(text) = reconfig_text(&txn) else { return Next::Looking };
                self.activate(core, &text, Some(designated), out)
            }
            _ => Next::Looking,
        }
    }

    /// NEWLEADER: the synced history becomes ours (Zab.tla FollowerProcessNEWLEADER). It is
    /// made durable first, then the new current epoch, then the ack.
    fn on_newleader(&mut self, core: &mut Core, p: QuorumPacket, out: &mut Vec<Command>) -> Next {
        if epoch_of(p.zxid()) != self.new_epoch || counter_of(p.zxid()) != 0 {
            return Next::Looking;
        }
        if core.cfg.reconfig_enabled {
            self.newleader_config = p.data.clone().filter(|d| !d.is_empty());
        }
        match self.base.clone() {
            Some(SyncBase::Diff) if self.reset => {
                out.push(Command::InstallSnapshot {
                    zxid: Zxid::ZERO,
                    body: None,
                    fuzzy_until: Zxid::ZERO,
                });
                core.logged = None;
                core.history.reset(Zxid::ZERO);
                core.snapshot_zxid = Zxid::ZERO;
                core.last_durable = Zxid::ZERO;
            }
            Some(SyncBase::Diff) => {}
            Some(SyncBase::Trunc(t)) => {
                out.push(Command::TruncateLog(t));
                core.history.truncate_after(t);
                if core.logged.as_ref().is_some_and(|n| n.zxid > t) {
                    core.logged = None;
                }
                core.last_durable = core.last_durable.min(core.last_zxid());
            }
            Some(SyncBase::Snap(s)) => {
                let Some(body) = self.snap_body.take().filter(|b| b.zxid() == s) else {
                    return Next::Looking;
                };
                // Everything committed before NEWLEADER may be in the body (ZooKeeper's
                // LearnerHandler sends NEWLEADER only once the snapshot is written).
                out.push(Command::InstallSnapshot {
                    zxid: s,
                    body: Some(body),
                    fuzzy_until: if self.staged_commit > s {
                        self.staged_commit
                    } else {
                        Zxid::ZERO
                    },
                });
                core.logged = None;
                core.history.reset(s);
                core.snapshot_zxid = s;
                core.last_durable = s;
            }
            None => return Next::Looking,
        }
        if self.reset {
            // The state is being rebuilt from what this leader sends: done asking.
            core.reset_pending = false;
        }
        self.reset = false;
        let staged = std::mem::take(&mut self.staged);
        if !staged.is_empty() {
            for (z, d) in &staged {
                core.history.push(*z, d.clone());
                if core.cfg.reconfig_enabled {
                    if let Some(text) = reconfig_text(d) {
                        core.log_reconfig(*z, text, out);
                    }
                }
            }
            if !self.observer {
                self.pending_acks
                    .extend(staged.iter().map(|e| e.0).filter(|z| *z > self.staged_commit));
            }
            out.push(Command::AppendTxns(staged));
        }
        // NEWLEADER's membership, when the synced history holds its reconfig txn and it is not
        // active here yet, is this peer's proposal from now on (ZooKeeper's Learner takes it
        // as the last-seen quorum verifier): a SNAP forgets the txn itself, and a peer synced
        // by a leader that never establishes, leading later, must still need both quorums.
        // An older proposal still logged here committed (a leader proposes a reconfig only
        // once the one before is active), so it is activated first, as a reconfig txn does.
        if let Some(n) = self.newleader_config.as_ref().and_then(|t| {
            let m = Membership::parse_bytes(t)?;
            let z = Zxid(m.version);
            (m.version > core.cfg.config_version && z <= core.last_zxid())
                .then(|| NextConfig::parse(z, t.clone()))
                .flatten()
        }) {
            if core.logged.as_ref().is_none_or(|l| l.zxid < n.zxid) {
                core.log_reconfig(n.zxid, n.text, out);
            }
        }
        // Applied at UPTODATE, as ZooKeeper's Learner.syncWithLeader does: until a quorum has
        // acked NEWLEADER, the leader's history is not committed.
        self.commit_at_uptodate = self.staged_commit.min(core.last_zxid());
        self.phase = LPhase::AfterNewLeader;
        self.newleader_wait = Some(core.last_zxid());
        self.on_durable(core, out)
    }

    fn on_durable(&mut self, core: &mut Core, out: &mut Vec<Command>) -> Next {
        if let Some(target) = self.newleader_wait {
            if core.last_durable < target {
                return Next::Stay;
            }
            self.newleader_wait = None;
            core.current_epoch = self.new_epoch;
            out.push(Command::PersistCurrentEpoch(self.new_epoch));
            Core::send(
                out,
                self.leader,
                QuorumPacket::new(PacketType::Ack, make_zxid(self.new_epoch, 0).to_wire()),
            );
        }
        if matches!(self.phase, LPhase::AfterNewLeader | LPhase::Active) {
            while self.pending_acks.front().is_some_and(|z| *z <= core.last_durable) {
                let z = self.pending_acks.pop_front().expect("non-empty");
                Core::send(out, self.leader, QuorumPacket::new(PacketType::Ack, z.to_wire()));
            }
        }
        Next::Stay
    }

    fn on_tick(&mut self, core: &mut Core, out: &mut Vec<Command>) -> Next {
        let now = core.now;
        if self.phase == LPhase::Connecting {
            if now - self.started > u64::from(core.cfg.init_limit) {
                return Next::Looking;
            }
            // With an election clock, its ticks retry a failed attempt (on_election_tick);
            // dialling here too would race a second connection against the first.
            if core.cfg.election_tick_ms == 0 {
                if self.connect_tries >= CONNECT_TRIES {
                    return Next::Looking;
                }
                self.connect_tries += 1;
                out.push(Command::Connect { to: self.leader });
            }
            return Next::Stay;
        }
        let limit =
            if self.phase == LPhase::Active { core.cfg.sync_limit } else { core.cfg.init_limit };
        if now - self.last_heard > u64::from(limit) {
            return Next::Looking;
        }
        Next::Stay
    }
}

/// The leader id at the start of a COMMITANDACTIVATE / INFORMANDACTIVATE payload.
fn leader_of(data: &[u8]) -> Option<Sid> {
    let id = i64::from_be_bytes(data.get(..8)?.try_into().ok()?);
    u64::try_from(id).ok()
}

#[cfg(test)]
mod acks_tests {
    use super::*;

    #[test]
    fn acks_count_voters_below_and_above_64() {
        let cfg = PeerConfig::new([1, 2, 100, 200, 300], [7]);
        let mut a = Acks::default();
        assert!(a.insert(1));
        assert!(!a.insert(1), "a second ack of the same server is not new");
        assert!(a.insert(7), "an observer's id is recorded");
        assert!(a.insert(100));
        assert!(!a.is_quorum(&cfg.voters), "2 voters of 5 (the observer does not count)");
        assert!(a.insert(300));
        assert!(a.is_quorum(&cfg.voters), "3 voters of 5");
        a.remove(&300);
        assert!(!a.is_quorum(&cfg.voters));
        a.remove(&1);
        assert!(a.insert(1), "removed, so new again");
        assert!(a.insert(200));
        assert!(a.is_quorum(&cfg.voters));
    }
}
