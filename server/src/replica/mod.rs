//! One replica: the ZAB peer ([`crate::zab::Peer`]) joined to the server's database
//! ([`crate::db::Database`]) and to the trees it commits. The same code runs a standalone
//! server (a one-voter peer, [`Replica::standalone`]), every member of an ensemble, and every
//! peer of the simulator; only the edges differ (sockets, clocks, threads, the disk).
//!
//! It is sans-IO towards the network and the clock: the runtime feeds it [`Event`]s (ticks,
//! packets, connection news, durability reports) and carries out the [`Output`]s (packets to
//! send, connections to open or close, committed txns to answer clients with, snapshots to
//! stream). The storage commands of the peer — epochs, appends, TRUNC, SNAP — are carried out
//! here, on the database, in the order the peer gave them; a storage failure is returned as a
//! [`Fatal`] and the replica must not be used again.
//!
//! Sequencing belongs to the leader alone: [`Replica::propose`] prepares a request against the
//! speculative state (the committed state plus every txn proposed and not yet committed) with
//! the zxid the peer gives, applies it there, and proposes it. Followers apply the txns they
//! receive. Every replica commits on the peer's `Commit(zxid)`, never on its own durability;
//! for a standalone server the two coincide (its own durable ack is the quorum).
//!
//! A txn this replica proposed is applied once: the speculative outcome (reply, watch
//! triggers) is kept with it and handed out at commit, and the committed tree advances to the
//! version kept at a *boundary* (the newest txn when the runtime calls
//! [`Replica::mark_boundary`]), so versions are kept only where someone needs one. A txn
//! received from a leader is applied at commit.

mod reconfig;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::{Database, DbError, State};
use crate::proto::{
    CloseSessionTxn, ErrorCode, Id, Jute, Request, Txn, TxnDigest, TxnEntry, TxnHeader,
    DEFAULT_MAX_LEN,
};
use crate::tree::prepare::{prepare_close_session, prepare_create_session, prepare_txn};
use crate::tree::{ApplyOutcome, DataTree, PrepareConfig, SessionContext};
use crate::zab::wire::{decode_i32, ForwardedRequest};
use crate::zab::{Command, Event, HistoryWindow, Peer, PeerConfig, PeerState, Role, Sid, Zxid};

/// The ZooKeeper opcode of createSession.
pub const OP_CREATE_SESSION: i32 = -10;
/// The ZooKeeper opcode of closeSession.
pub const OP_CLOSE_SESSION: i32 = -11;
/// The bytes of the digest record that follows each logged txn.
pub const DIGEST_BYTES: usize = 12;

/// Told when appended txns are durable (or the log failed): the group-commit log calls it on
/// its completion thread; the runtime hands it back as [`Event::Durable`].
pub type DurableNotify = Arc<dyn Fn(Zxid, bool) + Send + Sync>;

/// How a replica judges and sizes txns.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// How requests are prepared (ACLs, quotas, TTLs, closeSession lists).
    pub prepare: PrepareConfig,
    /// The largest txn (header + body + digest) any peer and the log accept.
    pub txn_bytes_max: usize,
    /// Keep a tree version after every txn this replica proposes (each is a boundary); the
    /// server's pipeline instead marks boundaries at the end of its batches.
    pub boundary_every_txn: bool,
    /// Report every append and every commit point (`Output::Stored(Appended)`,
    /// `Output::Command(Commit)`), for observers such as the simulator's checker; a server
    /// that only needs the committed txns leaves it off and saves two outputs per txn.
    pub report_appends_and_commits: bool,
    /// localSessionsEnabled: a request for a session the leader does not know, created by
    /// another server (the server id in its top byte), is that learner's local session, as
    /// ZooKeeper's LeaderSessionTracker judges it.
    pub local_sessions: bool,
    /// Write received txns to the log (ZooKeeper's `syncEnabled`, for observers): when off,
    /// they are applied but never logged, and reported durable at once (an observer never
    /// acknowledges; after a restart it syncs from the leader again).
    pub log_txns: bool,
}

/// Why the replica stopped: storage failed, so going on could lose or invent txns.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Fatal {
    /// The log refused a txn.
    #[error("cannot log txn {zxid:#x}: {source}")]
    Append {
        /// The txn's zxid.
        zxid: Zxid,
        /// Why.
        source: corral_engine::log::LogError,
    },
    /// A write or flush of the log failed (never retried: what the file holds is unknown).
    #[error("the transaction log failed at zxid {zxid:#x}: {cause}")]
    LogFailed {
        /// The first txn whose write failed.
        zxid: Zxid,
        /// The log's error.
        cause: String,
    },
    /// Another storage operation (epoch file, TRUNC, SNAP install) failed.
    #[error("{what}: {cause}")]
    Storage {
        /// The operation.
        what: String,
        /// Why.
        cause: String,
    },
}

impl Fatal {
    fn storage(what: impl Into<String>, e: DbError) -> Fatal {
        Fatal::Storage { what: what.into(), cause: e.to_string() }
    }
}

/// A committed txn, applied to the committed tree.
#[derive(Debug)]
pub struct Applied {
    /// The txn.
    pub entry: TxnEntry,
    /// What applying it produced (the client's reply, watch triggers).
    pub outcome: ApplyOutcome,
    /// Proposed by this replica (its outcome was computed at proposal).
    pub local: bool,
    /// The committed tree right after it, when it ends a commit group; every txn of a group
    /// commits together, and waiting reads see exactly this version.
    pub version: Option<DataTree>,
    /// This replica's tree digest right after it (for a txn of a group, the speculative one).
    pub digest: i64,
    /// Bytes logged.
    pub bytes: u64,
}

/// What the replica did to its storage (for observers: metrics, the simulator's checker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Txns appended to the log (durable later, reported with [`Event::Durable`]).
    Appended(Vec<(Zxid, Bytes)>),
    /// TRUNC to `zxid` begins (a crash may leave it half done: the log cut, or not).
    Truncating(Zxid),
    /// The log was cut after `zxid` (TRUNC) and the state rebuilt.
    Truncated(Zxid),
    /// A SNAP taken at `zxid` is being installed (a crash may leave the log cut after it).
    Installing(Zxid),
    /// A snapshot taken at `zxid` replaced the state, with an empty log after it.
    Installed(Zxid),
    /// An epoch file was durably written.
    AcceptedEpoch(u32),
    /// An epoch file was durably written.
    CurrentEpoch(u32),
}

/// What the runtime carries out, in order.
#[derive(Debug)]
pub enum Output {
    /// A peer command the runtime carries out: network (`SendNotification`, `Connect`,
    /// `Disconnect`, `Send`) or news (`RoleChanged`, `Established`, `UpToDate`, `SyncDone`,
    /// `Revalidated`, `SyncStarted`).
    Command(Command),
    /// Send the SNAP payload to `to`: this state (taken at `zxid`), in ZooKeeper's snapshot
    /// body format, then "BenWasHere". Serialising it is the runtime's (off the replica's
    /// thread, for a large tree).
    Snapshot {
        /// The learner.
        to: Sid,
        /// The state's zxid.
        zxid: Zxid,
        /// The state.
        state: State,
    },
    /// A committed txn.
    Applied(Box<Applied>),
    /// A storage operation done.
    Stored(Stored),
}

/// Why [`Replica::propose`] did not propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotProposed {
    /// This replica is not an established leader.
    #[error("not an established leader")]
    NotLeader,
    /// The leader has `outstanding_max` proposals in flight; try after a commit.
    #[error("too many proposals in flight")]
    Busy,
    /// A txn of the server's own (an expiry's closeSession, a cleanup) over the txn limit.
    #[error("the server's own txn is over the txn limit")]
    TooLarge,
    /// An expiry of a session that is already closing or gone: nothing to do.
    #[error("no such session")]
    NoSuchSession,
    /// A request of the server's own that would fail (a container no longer empty).
    #[error("the server's own request would fail")]
    Refused,
}

/// Why [`Replica::propose`] failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// Nothing was proposed, for this reason.
    #[error(transparent)]
    Not(#[from] NotProposed),
    /// Storage failed.
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

/// What a leader is asked to sequence.
#[derive(Debug, Clone)]
pub enum Proposal<'a> {
    /// A client request (its session, xid and authenticated ids).
    Client { session_id: i64, cxid: i32, req: &'a Request, auth: &'a [Id] },
    /// A client request already known to fail with `err` (a malformed multi): an error txn,
    /// which takes a zxid as every failed write does.
    Failed { session_id: i64, cxid: i32, err: ErrorCode },
    /// A new session with this id and negotiated timeout.
    CreateSession { session_id: i64, timeout_ms: i32 },
    /// The session closes (its client asked, `cxid` > 0, or it expired, `cxid` = 0); its
    /// ephemerals go with it.
    CloseSession { session_id: i64, cxid: i32 },
    /// Ephemerals of a session that no longer exists (left by an older version): a
    /// closeSession of it removes them.
    Orphans { session_id: i64 },
    /// A request of the server's own (deleteContainer of the container and TTL reaper), as
    /// session 0; not proposed if it would fail.
    Server { req: &'a Request },
}

/// A txn in the history that is not applied to the committed state yet.
#[derive(Debug)]
struct Pending {
    zxid: Zxid,
    data: Bytes,
    /// Proposed by this replica: the txn as it will be handed out at commit (its outcome
    /// computed at proposal; boxed, so that moving it around costs nothing).
    local: Option<Box<Applied>>,
    /// The committed-session change it makes, applied at commit.
    session_change: Option<(i64, Option<i32>)>,
}

/// One replica.
pub struct Replica {
    peer: Peer,
    db: Database,
    opts: ReplicaOptions,
    notify: Option<DurableNotify>,
    /// The committed state, at `applied`.
    committed: State,
    applied: Zxid,
    /// The peer's last commit point (txns up to it are committed; they are applied up to the
    /// last boundary at or below it).
    commit_point: Zxid,
    durable: Zxid,
    /// Txns up to this zxid may already be in the installed snapshot (a ZooKeeper leader's
    /// fuzzy SNAP): applied without comparing digests.
    fuzzy_until: Zxid,
    /// The history above `applied`, in zxid order.
    pending: VecDeque<Pending>,
    /// The zxids of `pending` an apply may end at, in order: received txns, and proposals of
    /// this replica that are boundaries. (Keeps finding the next one O(1), whatever the
    /// number of txns in flight.)
    boundaries: VecDeque<Zxid>,
    /// An established leader's speculative state: `committed` + every pending txn.
    spec: Option<State>,
    /// The snapshot trigger fired; the snapshot is taken at the next committed version.
    snapshot_due: bool,
    /// Past a fuzzy snapshot's txns, a snapshot must replace it: unlike a routine one (skipped
    /// when the snapshotter is busy, as ZooKeeper skips it), it is tried again until taken.
    fuzzy_snapshot_due: bool,
    fatal: Option<Fatal>,
    /// This server's local sessions ([`Replica::set_local_session`]).
    local: std::collections::HashSet<i64>,
    /// The runtime's wall clock (ms since the Unix epoch): the timestamp of txns this
    /// replica makes on its own (forwarded requests, expiries).
    now_ms: i64,
    /// A reusable buffer for the peer's commands (steps nest: a step may find it taken).
    cmds: Vec<Command>,
    /// Leader: learners' requests that arrived while `outstanding_max` proposals were in
    /// flight, in arrival order; proposed as commits make room (see [`Replica::busy`]).
    held: VecDeque<Held>,
}

/// A learner's request the leader holds until it may propose again.
#[derive(Debug)]
struct Held {
    from: Sid,
    request: ForwardedRequest,
    /// Owned by a session on another server: answered SESSIONMOVED (an error txn).
    moved: bool,
}

/// How many learners' requests a leader holds, per proposal it may have in flight, before it
/// drops the connection of the learner that sends more. Each learner bounds what it forwards
/// by its own globalOutstandingLimit, so only an ensemble of many saturated learners (or a
/// misbehaving one) reaches it.
const HELD_PER_OUTSTANDING: usize = 16;

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("peer", &self.peer)
            .field("applied", &self.applied)
            .field("durable", &self.durable)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// The state a peer restarts from: the epoch files, the snapshot's zxid and the log's tail.
fn peer_state(db: &Database, window: usize) -> Result<PeerState, Fatal> {
    let (base, txns) = db.history(window).map_err(|e| Fatal::storage("reading the log", e))?;
    let mut history = HistoryWindow::new(base, window);
    for (z, d) in txns {
        history.push(z, Bytes::from(d));
    }
    Ok(PeerState {
        accepted_epoch: db.accepted_epoch(),
        current_epoch: db.current_epoch(),
        history,
        snapshot_zxid: db.snapshot_zxid(),
        logged_config: None,
    })
}

impl Replica {
    /// A member of an ensemble over a recovered database; it starts LOOKING. `notify` is
    /// required with the group-commit log (`None` with the inline log, which the runtime
    /// drives with [`Replica::flush`]).
    pub fn member(
        cfg: PeerConfig,
        id: Sid,
        db: Database,
        state: State,
        opts: ReplicaOptions,
        notify: Option<DurableNotify>,
    ) -> Result<(Replica, Vec<Output>), Fatal> {
        let mut ps = peer_state(&db, cfg.commit_log_count)?;
        // Recovery applied every logged txn: a reconfig txn in the log, however old, left its
        // membership in /zookeeper/config (the configured one is set there only after this).
        ps.logged_config = state
            .tree
            .node(crate::tree::CONFIG_PATH)
            .and_then(|n| n.data_bytes().map(Bytes::copy_from_slice))
            .and_then(|text| {
                let m = crate::zab::Membership::parse_bytes(&text)?;
                (cfg.reconfig_enabled && m.version > cfg.config_version)
                    .then_some((Zxid(m.version), text))
            });
        let (peer, cmds) = Peer::new(cfg, id, ps);
        Replica::build(peer, cmds, db, state, opts, notify)
    }

    /// A standalone server: a one-voter ensemble, serving at once, its zxids going on from
    /// the log's last ([`Peer::standalone`]).
    pub fn standalone(
        cfg: PeerConfig,
        id: Sid,
        db: Database,
        state: State,
        opts: ReplicaOptions,
        notify: Option<DurableNotify>,
    ) -> Result<(Replica, Vec<Output>), Fatal> {
        // No learner will ever be synced from its history: recovery already read the log,
        // and where it ends is all the peer needs (reading it again cost restarts time).
        let last = Zxid::from_wire(state.tree.last_processed_zxid()).max(db.snapshot_zxid());
        let ps = PeerState {
            accepted_epoch: db.accepted_epoch(),
            current_epoch: db.current_epoch(),
            history: HistoryWindow::new(last, 1),
            snapshot_zxid: db.snapshot_zxid(),
            logged_config: None,
        };
        let (peer, cmds) = Peer::standalone(cfg, id, ps);
        Replica::build(peer, cmds, db, state, opts, notify)
    }

    fn build(
        peer: Peer,
        cmds: Vec<Command>,
        db: Database,
        state: State,
        opts: ReplicaOptions,
        notify: Option<DurableNotify>,
    ) -> Result<(Replica, Vec<Output>), Fatal> {
        // Recovery replayed the whole log: the state is at its last txn.
        let last = peer.last_zxid();
        let mut r = Replica {
            peer,
            db,
            opts,
            notify,
            committed: state,
            applied: last,
            commit_point: last,
            fuzzy_until: Zxid::ZERO,
            durable: last,
            pending: VecDeque::new(),
            boundaries: VecDeque::new(),
            spec: None,
            snapshot_due: false,
            fuzzy_snapshot_due: false,
            fatal: None,
            local: std::collections::HashSet::new(),
            now_ms: 0,
            cmds: Vec::new(),
            held: VecDeque::new(),
        };
        let mut out = Vec::new();
        r.run(cmds, &mut out)?;
        Ok((r, out))
    }

    /// ZooKeeper's `initConfigInZKDatabase`: a member's `/zookeeper/config` holds its
    /// membership text (nothing without one: standalone, and the simulators). Done when the
    /// state is replaced (TRUNC, SNAP); the runtime does it at start.
    pub fn init_config_node(&mut self) {
        let cfg = self.peer.config();
        if cfg.config_text.is_empty() {
            return;
        }
        let (text, version) = (cfg.config_text.clone(), cfg.config_version as i64);
        self.committed.tree.set_config_node(&text, version, self.now_ms);
    }

    /// Sets the wall clock (ms since the Unix epoch) that timestamps the txns this replica
    /// makes on its own; the runtime calls it as its clock moves.
    pub fn set_clock(&mut self, wall_ms: i64) {
        self.now_ms = wall_ms;
    }

    /// Txns in the history not yet applied (proposed or received, not committed here yet).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Leader: may this server's own client send requests for `session_id`? False if the
    /// session moved to another server ([`Peer::claim_session`]).
    pub fn claim_session(&mut self, session_id: i64) -> bool {
        self.peer.claim_session(session_id)
    }

    /// Marks `session_id` as one of this server's local sessions (or no longer one): its
    /// requests are prepared as a local session's when this replica leads.
    pub fn set_local_session(&mut self, session_id: i64, local: bool) {
        if local {
            self.local.insert(session_id);
        } else {
            self.local.remove(&session_id);
        }
    }

    /// The peer (role, epochs, next zxid).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The database, for the runtime's own upkeep (autopurge).
    pub fn db_mut(&mut self) -> &mut Database {
        &mut self.db
    }

    /// Gives the database back (an orderly close).
    pub fn into_db(self) -> Database {
        self.db
    }

    /// The committed state.
    pub fn committed(&self) -> &State {
        &self.committed
    }

    /// The zxid the committed state is at.
    pub fn applied(&self) -> Zxid {
        self.applied
    }

    /// The newest zxid known committed (applied, or to be applied at the next boundary).
    pub fn commit_point(&self) -> Zxid {
        self.commit_point
    }

    /// The last zxid the log has reported durable.
    pub fn durable(&self) -> Zxid {
        self.durable
    }

    /// The last zxid of the history (appended, durable or not).
    pub fn last_zxid(&self) -> Zxid {
        self.peer.last_zxid()
    }

    /// The speculative state a leader prepares against (the committed state when nothing is
    /// in flight).
    pub fn speculative(&mut self) -> &State {
        self.ensure_spec();
        self.spec.as_ref().expect("built")
    }

    /// Feeds one event to the peer and carries out what follows; the outputs are appended to
    /// `out` (on a storage failure, those of the commands carried out before it).
    pub fn step(&mut self, ev: Event, out: &mut Vec<Output>) -> Result<(), Fatal> {
        self.step_into(ev, out)
    }

    fn step_into(&mut self, ev: Event, out: &mut Vec<Output>) -> Result<(), Fatal> {
        if let Some(f) = &self.fatal {
            return Err(f.clone());
        }
        if let Event::Durable { zxid } = ev {
            self.durable = self.durable.max(zxid);
        }
        if self.fuzzy_snapshot_due
            && !self.db.snapshot_in_progress()
            && self.db.snapshot_now(self.applied, &self.committed)
        {
            // Writes stopped while the snapshotter was busy: the state at `applied` is whole
            // between events.
            self.fuzzy_snapshot_due = false;
        }
        let mut cmds = std::mem::take(&mut self.cmds);
        self.peer.step(ev, &mut cmds);
        let r = self.run_buf(&mut cmds, out);
        if self.cmds.capacity() < cmds.capacity() {
            cmds.clear();
            self.cmds = cmds;
        }
        r
    }

    /// Inline log only: writes what was appended and reports it durable.
    pub fn flush(&mut self, out: &mut Vec<Output>) -> Result<(), Fatal> {
        let last = self.db.flush().map_err(|e| Fatal::storage("flushing the log", e));
        match last {
            Ok(Some(z)) => self.step_into(Event::Durable { zxid: z }, out),
            Ok(None) => Ok(()),
            Err(f) => Err(self.fail(f)),
        }
    }

    /// True if the inline log holds appends waiting for [`Replica::flush`].
    pub fn has_unflushed(&self) -> bool {
        self.db.log().has_pending()
    }

    fn fail(&mut self, f: Fatal) -> Fatal {
        if self.fatal.is_none() {
            self.fatal = Some(f.clone());
        }
        f
    }

    fn run(&mut self, mut cmds: Vec<Command>, out: &mut Vec<Output>) -> Result<(), Fatal> {
        self.run_buf(&mut cmds, out)
    }

    /// Carries out `cmds` in order (draining it).
    fn run_buf(&mut self, cmds: &mut Vec<Command>, out: &mut Vec<Output>) -> Result<(), Fatal> {
        for c in cmds.drain(..) {
            if let Err(f) = self.exec(c, out) {
                return Err(self.fail(f));
            }
        }
        Ok(())
    }

    fn exec(&mut self, c: Command, out: &mut Vec<Output>) -> Result<(), Fatal> {
        match c {
            Command::PersistAcceptedEpoch(e) => {
                self.db
                    .persist_accepted_epoch(e)
                    .map_err(|err| Fatal::storage("writing acceptedEpoch", err))?;
                out.push(Output::Stored(Stored::AcceptedEpoch(e)));
            }
            Command::PersistCurrentEpoch(e) => {
                self.db
                    .persist_current_epoch(e)
                    .map_err(|err| Fatal::storage("writing currentEpoch", err))?;
                out.push(Output::Stored(Stored::CurrentEpoch(e)));
            }
            Command::AppendTxns(txns) => {
                for (z, d) in &txns {
                    if self.opts.log_txns {
                        self.append(*z, d)?;
                    } else if let Some(n) = &self.notify {
                        n(*z, true);
                    }
                    if self.pending.back().is_none_or(|p| p.zxid < *z) {
                        // Received from a leader (a proposal of ours is already pending).
                        self.pending.push_back(Pending {
                            zxid: *z,
                            data: d.clone(),
                            local: None,
                            session_change: None,
                        });
                        self.boundaries.push_back(*z);
                        if let Some(spec) = &mut self.spec {
                            // Only a leader keeps a speculative state, and a leader appends
                            // only its own proposals: this is a bug if it happens.
                            debug_assert!(false, "a received txn on a leader's speculative state");
                            if let Ok(e) = TxnEntry::decode(d, DEFAULT_MAX_LEN) {
                                spec.apply(&e);
                            }
                        }
                    }
                }
                if self.opts.report_appends_and_commits {
                    out.push(Output::Stored(Stored::Appended(txns)));
                }
            }
            Command::TruncateLog(z) => {
                out.push(Output::Stored(Stored::Truncating(z)));
                self.db.flush().map_err(|e| Fatal::storage("flushing the log", e))?;
                let state = self
                    .db
                    .truncate_after(z)
                    .map_err(|e| Fatal::storage(format!("truncating the log after {z:#x}"), e))?;
                self.reset_to(state);
                self.durable = self.durable.min(self.applied);
                out.push(Output::Stored(Stored::Truncated(z)));
            }
            Command::InstallSnapshot { zxid, body, fuzzy_until } => {
                out.push(Output::Stored(Stored::Installing(zxid)));
                let state = self.db.install_snapshot(zxid, body.as_ref()).map_err(|e| {
                    Fatal::storage(format!("installing the snapshot at {zxid:#x}"), e)
                })?;
                self.reset_to(state);
                self.applied = zxid;
                self.commit_point = zxid;
                self.durable = zxid;
                self.fuzzy_until = fuzzy_until;
                out.push(Output::Stored(Stored::Installed(zxid)));
            }
            Command::Commit(z) => {
                self.commit_point = self.commit_point.max(z.min(self.last_zxid()));
                self.apply_committed(out);
                if self.opts.report_appends_and_commits {
                    out.push(Output::Command(Command::Commit(z)));
                }
                self.propose_held(out)?;
            }
            Command::SendSnapshot { to, zxid } => {
                let state = self.state_at(zxid);
                out.push(Output::Snapshot { to, zxid, state });
            }
            Command::Request { from, request } => {
                self.forwarded(Held { from, request, moved: false }, out)?;
            }
            Command::SessionMoved { from, request } => {
                self.forwarded(Held { from, request, moved: true }, out)?;
            }
            Command::Activate { text, version } => {
                // ZooKeeper's initConfigInZKDatabase at activation (a reconfig txn sets the
                // same text again when it applies).
                for s in [Some(&mut self.committed), self.spec.as_mut()].into_iter().flatten() {
                    s.tree.set_config_node(&text, version as i64, self.now_ms);
                }
                out.push(Output::Command(Command::Activate { text, version }));
            }
            Command::RoleChanged(role) => {
                self.role_changed(role, out)?;
                out.push(Output::Command(Command::RoleChanged(role)));
            }
            other => out.push(Output::Command(other)),
        }
        Ok(())
    }

    fn append(&mut self, z: Zxid, d: &Bytes) -> Result<(), Fatal> {
        let cb: corral_engine::log::AppendCallback = match &self.notify {
            Some(n) => {
                let n = n.clone();
                Box::new(move |r| n(z, r.is_ok()))
            }
            None => Box::new(|_| {}),
        };
        self.db
            .log()
            .append_async(z.get(), d.clone(), cb)
            .map_err(|source| Fatal::Append { zxid: z, source })
    }

    /// The state after TRUNC or SNAP: the log's whole content is applied to it.
    fn reset_to(&mut self, state: State) {
        // Recovery replayed every txn the log kept; each sets the tree's last zxid.
        self.applied =
            Zxid::from_wire(state.tree.last_processed_zxid()).max(self.db.snapshot_zxid());
        self.committed = state;
        self.init_config_node();
        self.commit_point = self.commit_point.min(self.applied);
        self.pending.clear();
        self.boundaries.clear();
        self.spec = None;
    }

    fn role_changed(&mut self, role: Role, out: &mut Vec<Output>) -> Result<(), Fatal> {
        // What was proposed and not committed stays in the history as plain txns: the next
        // leader commits or truncates them. The speculative state goes, and so do learners'
        // requests held for it (their learners follow the next leader, and their clients
        // reconnect or time out, as when a ZooKeeper leader goes).
        self.spec = None;
        self.held.clear();
        for p in &mut self.pending {
            p.local = None;
        }
        self.boundaries = self.pending.iter().map(|p| p.zxid).collect();
        if let Role::Leading { established: true, .. } = role {
            // A new leader tracks every global session of its committed state afresh.
            let sessions: Vec<(i64, i32)> =
                self.committed.sessions.iter().map(|(k, v)| (*k, *v)).collect();
            for (session_id, timeout) in sessions {
                self.step_into(Event::SessionCreated { session_id, timeout }, out)?;
            }
        }
        Ok(())
    }

    fn ensure_spec(&mut self) {
        if self.spec.is_some() {
            return;
        }
        let mut s = self.committed.clone();
        for p in &self.pending {
            if let Ok(e) = TxnEntry::decode(&p.data, DEFAULT_MAX_LEN) {
                s.apply(&e);
            }
        }
        self.spec = Some(s);
    }

    /// The committed state with every pending txn up to `zxid` applied (a SNAP payload).
    fn state_at(&self, zxid: Zxid) -> State {
        assert!(zxid >= self.applied, "SNAP below the applied state");
        let mut s = self.committed.clone();
        for p in self.pending.iter().take_while(|p| p.zxid <= zxid) {
            match &p.local {
                Some(l) => {
                    s.apply(&l.entry);
                }
                None => {
                    if let Ok(e) = TxnEntry::decode(&p.data, DEFAULT_MAX_LEN) {
                        s.apply(&e);
                    }
                }
            }
        }
        s
    }

    /// Keeps the speculative version after the newest pending txn of this replica (a
    /// boundary) and returns its zxid; with none, the committed zxid. Everything up to a
    /// boundary commits as one group, and a read that waits for it is answered from it.
    pub fn mark_boundary(&mut self) -> Zxid {
        match self.pending.back_mut() {
            Some(Pending { zxid, local: Some(l), .. }) => {
                if l.version.is_none() {
                    l.version = Some(self.spec.as_ref().expect("a leader's").tree.clone());
                    self.boundaries.push_back(*zxid);
                }
                *zxid
            }
            Some(p) => p.zxid,
            None => self.applied,
        }
    }

    /// Applies every committed txn up to the last boundary at or below the commit point.
    pub fn apply_committed(&mut self, out: &mut Vec<Output>) {
        let point = self.commit_point;
        // The last boundary at or below the commit point: a received txn applies on its own,
        // a proposal of this replica only with the group its boundary ends.
        let mut end = None;
        while let Some(&b) = self.boundaries.front() {
            if b > point {
                break;
            }
            end = Some(b);
            self.boundaries.pop_front();
        }
        let Some(end) = end else { return };
        while self.pending.front().is_some_and(|p| p.zxid <= end) {
            let p = self.pending.pop_front().expect("checked");
            let bytes = p.data.len() as u64;
            let applied = match p.local {
                Some(mut l) => {
                    if let Some((id, change)) = p.session_change {
                        match change {
                            Some(t) => self.committed.sessions.insert(id, t),
                            None => self.committed.sessions.remove(&id),
                        };
                    }
                    if let Some(v) = &l.version {
                        self.committed.tree = v.clone();
                    }
                    l.bytes = bytes;
                    l
                }
                None => {
                    let Ok(entry) = TxnEntry::decode(&p.data, DEFAULT_MAX_LEN) else {
                        // Every txn was checked when it was logged; a txn that does not
                        // decode is skipped (ZooKeeper would fail to apply it too).
                        tracing::error!(zxid = format_args!("{:#x}", p.zxid), "undecodable txn");
                        self.applied = p.zxid;
                        continue;
                    };
                    let outcome = if p.zxid <= self.fuzzy_until {
                        self.committed.apply_unchecked(&entry)
                    } else {
                        self.committed.apply(&entry)
                    };
                    Box::new(Applied {
                        entry,
                        outcome,
                        local: false,
                        version: Some(self.committed.tree.clone()),
                        digest: self.committed.tree.digest(),
                        bytes,
                    })
                }
            };
            self.applied = p.zxid;
            self.after_apply(&applied, out);
            out.push(Output::Applied(applied));
        }
    }

    fn after_apply(&mut self, a: &Applied, out: &mut Vec<Output>) {
        // The leader's session tracker follows the committed sessions.
        let leading = matches!(self.peer.role(), Role::Leading { established: true, .. });
        let id = a.entry.header.client_id;
        if leading {
            let ev = match &a.entry.txn {
                Txn::CreateSession(t) => {
                    Some(Event::SessionCreated { session_id: id, timeout: t.time_out })
                }
                Txn::CloseSession(_) => Some(Event::SessionClosed { session_id: id }),
                _ => None,
            };
            if let Some(ev) = ev {
                // Session events produce no storage commands: nothing here can fail.
                let mut cmds = Vec::new();
                self.peer.step(ev, &mut cmds);
                out.extend(cmds.into_iter().map(Output::Command));
            }
        }
        self.snapshot_due |= self.db.count_applied(a.bytes);
        if self.fuzzy_until > Zxid::ZERO && self.applied >= self.fuzzy_until {
            // Past a fuzzy snapshot's txns: a snapshot of this state replaces it, so that a
            // restart does not replay them over it (ZooKeeper's learner snapshots at
            // NEWLEADER for the same reason).
            self.fuzzy_until = Zxid::ZERO;
            self.fuzzy_snapshot_due = true;
        }
        if (self.snapshot_due || self.fuzzy_snapshot_due) && a.version.is_some() {
            self.snapshot_due = false;
            if self.db.snapshot_now(self.applied, &self.committed) {
                self.fuzzy_snapshot_due = false;
            }
        }
    }

    /// Replaces the committed state by `state` at the current zxid (the AdminServer's
    /// `restore`): durably (as the snapshot at that zxid), then in memory; the session tracker
    /// follows the restored sessions. Only with nothing in flight: the caller holds new
    /// writes until then, and until no snapshot is being written (one of the old state at the
    /// same zxid could otherwise land over it).
    pub fn restore(&mut self, mut state: State, out: &mut Vec<Output>) -> Result<(), Fatal> {
        if let Some(f) = &self.fatal {
            return Err(f.clone());
        }
        debug_assert!(self.pending.is_empty(), "restore with txns in flight");
        let zxid = self.applied;
        state.tree.set_last_processed_zxid(zxid.to_wire());
        if let Err(e) = self.db.install_state(zxid, &state) {
            return Err(self.fail(Fatal::storage(format!("restoring a snapshot at {zxid:#x}"), e)));
        }
        let old: Vec<i64> = self.committed.sessions.keys().copied().collect();
        let new: Vec<(i64, i32)> = state.sessions.iter().map(|(k, v)| (*k, *v)).collect();
        self.reset_to(state);
        self.applied = zxid;
        self.fuzzy_until = Zxid::ZERO;
        self.fuzzy_snapshot_due = false;
        self.snapshot_due = false;
        for session_id in old {
            if !new.iter().any(|(k, _)| *k == session_id) {
                self.step_into(Event::SessionClosed { session_id }, out)?;
            }
        }
        for (session_id, timeout) in new {
            self.step_into(Event::SessionCreated { session_id, timeout }, out)?;
        }
        Ok(())
    }

    /// Leader: true while it may not propose (`outstanding_max` proposals in flight, or a
    /// hand-over under way): the runtime holds its clients' requests until a commit makes
    /// room, as this replica holds learners'.
    pub fn busy(&self) -> bool {
        self.peer.proposal_room() == Some(0)
    }

    /// An established leader: how many more proposals it may make now
    /// ([`Peer::proposal_room`]); `None` when not leading.
    pub fn proposal_room(&self) -> Option<usize> {
        self.peer.proposal_room()
    }

    /// Learners' requests held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Leader: a learner's request, proposed now, or held behind earlier ones while
    /// [`Replica::busy`]. Past the bound, the learner's connection is closed (it syncs
    /// again; its clients see connection loss), never a request silently dropped.
    fn forwarded(&mut self, h: Held, out: &mut Vec<Output>) -> Result<(), Fatal> {
        if self.held.is_empty() && !self.busy() {
            return self.propose_held_one(&h, out);
        }
        let max = self.peer.config().outstanding_max.saturating_mul(HELD_PER_OUTSTANDING);
        if self.held.len() >= max {
            tracing::warn!(
                learner = h.from,
                held = self.held.len(),
                "too many learners' requests wait for the proposals in flight; closing the connection of the learner that sent one more"
            );
            out.push(Output::Command(Command::Disconnect { peer: h.from, conn: None }));
            return Ok(());
        }
        self.held.push_back(h);
        Ok(())
    }

    /// Proposes held requests while there is room.
    fn propose_held(&mut self, out: &mut Vec<Output>) -> Result<(), Fatal> {
        while !self.held.is_empty() && !self.busy() {
            let h = self.held.pop_front().expect("not empty");
            self.propose_held_one(&h, out)?;
        }
        Ok(())
    }

    fn propose_held_one(&mut self, h: &Held, out: &mut Vec<Output>) -> Result<(), Fatal> {
        if !h.moved {
            return self.propose_forwarded(&h.request, out);
        }
        let p = Proposal::Failed {
            session_id: h.request.session_id,
            cxid: h.request.cxid,
            err: ErrorCode::SessionMoved,
        };
        match self.propose_into(p, self.now_ms, out) {
            Ok(_) | Err(Err(_)) => Ok(()),
            Err(Ok(f)) => Err(f),
        }
    }

    /// Leader: sequences a forwarded request (from a learner, or this peer's own client
    /// through the peer).
    fn propose_forwarded(
        &mut self,
        r: &ForwardedRequest,
        out: &mut Vec<Output>,
    ) -> Result<(), Fatal> {
        let decoded;
        let p = match r.op {
            OP_CREATE_SESSION => Proposal::CreateSession {
                session_id: r.session_id,
                timeout_ms: decode_i32(&r.body).unwrap_or(0),
            },
            OP_CLOSE_SESSION => Proposal::CloseSession { session_id: r.session_id, cxid: r.cxid },
            op => match Request::decode(op, &r.body, DEFAULT_MAX_LEN) {
                Ok(req) => {
                    decoded = req;
                    Proposal::Client {
                        session_id: r.session_id,
                        cxid: r.cxid,
                        req: &decoded,
                        auth: &r.auth,
                    }
                }
                Err(_) => Proposal::Failed {
                    session_id: r.session_id,
                    cxid: r.cxid,
                    err: ErrorCode::MarshallingError,
                },
            },
        };
        match self.propose_into(p, self.now_ms, out) {
            // Not proposed (no longer leading; a busy leader held it before this): the
            // learner's client gets no answer and reconnects when its leader goes.
            Ok(_) | Err(Err(_)) => Ok(()),
            Err(Ok(f)) => Err(f),
        }
    }

    /// Leader: prepares `p` against the speculative state with the next zxid, applies it
    /// there and proposes it; returns the zxid. `time` is the txn's timestamp (ms since the
    /// Unix epoch, from the runtime's clock).
    pub fn propose(
        &mut self,
        p: Proposal<'_>,
        time: i64,
        out: &mut Vec<Output>,
    ) -> Result<Zxid, ProposeError> {
        match self.propose_into(p, time, out) {
            Ok(z) => Ok(z),
            Err(Ok(f)) => Err(ProposeError::Fatal(f)),
            Err(Err(n)) => Err(ProposeError::Not(n)),
        }
    }

    fn propose_into(
        &mut self,
        p: Proposal<'_>,
        time: i64,
        out: &mut Vec<Output>,
    ) -> Result<Zxid, Result<Fatal, NotProposed>> {
        if let Some(f) = &self.fatal {
            return Err(Ok(f.clone()));
        }
        if !matches!(self.peer.role(), Role::Leading { established: true, .. }) {
            return Err(Err(NotProposed::NotLeader));
        }
        let Some(zxid) = self.peer.next_zxid() else { return Err(Err(NotProposed::Busy)) };
        self.ensure_spec();
        let spec = self.spec.as_ref().expect("built");
        let header = |session_id: i64, cxid: i32, txn: &Txn| TxnHeader {
            client_id: session_id,
            cxid,
            zxid: zxid.to_wire(),
            time,
            op: txn.opcode().code(),
        };
        let known = |id: i64| spec.sessions.contains_key(&id);
        let me = self.peer.id() as i64;
        let local_sessions = self.opts.local_sessions;
        let local = |id: i64| {
            self.local.contains(&id)
                || (local_sessions
                    && !known(id)
                    && crate::session::ids::server_id_of_session(id) != me)
        };
        // The header, digest and framing, plus what the request carries that the txn repeats.
        let size_hint = 96
            + match &p {
                Proposal::Client { req: Request::SetData(r), .. } => r.path.len() + r.data.len(),
                Proposal::Client {
                    req: Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r),
                    ..
                } => r.path.len() + r.data.len() + 32 * r.acl.len(),
                _ => 160,
            };
        let (mut hdr, mut txn, server_made) = match p {
            Proposal::CreateSession { session_id, timeout_ms } => {
                let txn = prepare_create_session(timeout_ms);
                (header(session_id, 0, &txn), txn, false)
            }
            Proposal::CloseSession { session_id, cxid } => {
                if !known(session_id) {
                    if cxid == 0 {
                        // An expiry of a session already closing or closed: nothing to do.
                        return Err(Err(NotProposed::NoSuchSession));
                    }
                    let txn = Txn::error(ErrorCode::SessionExpired);
                    (header(session_id, cxid, &txn), txn, false)
                } else {
                    let txn = prepare_close_session(&spec.tree, session_id, &self.opts.prepare);
                    (header(session_id, cxid, &txn), txn, cxid == 0)
                }
            }
            Proposal::Orphans { session_id } => {
                let txn = prepare_close_session(&spec.tree, session_id, &self.opts.prepare);
                (header(session_id, 0, &txn), txn, true)
            }
            Proposal::Server { req } => {
                let ctx = SessionContext { session_id: 0, auth: &[], local_session: false };
                let (h, t) =
                    prepare_txn(&spec.tree, &ctx, &self.opts.prepare, req, 0, zxid.to_wire(), time);
                if matches!(t, Txn::Error(_)) {
                    return Err(Err(NotProposed::Refused));
                }
                (h, t, true)
            }
            Proposal::Failed { session_id, cxid, err } => {
                let txn = Txn::error(err);
                (header(session_id, cxid, &txn), txn, false)
            }
            Proposal::Client { session_id, cxid, req, auth } => {
                // A local session may do anything but own an ephemeral; a global one must be
                // known (PrepRequestProcessor's checkSession: an unknown or closing session).
                let local_session = local(session_id);
                if !local_session && !known(session_id) {
                    let txn = Txn::error(ErrorCode::SessionExpired);
                    (header(session_id, cxid, &txn), txn, false)
                } else if let Request::Reconfig(r) = req {
                    // Judged here, where the membership is known (ZooKeeper's order of checks).
                    let cfg = self.peer.config();
                    let current = reconfig::Membership::parse_bytes(&cfg.config_text);
                    let may_write = self.opts.prepare.skip_acl
                        || spec.tree.node(crate::tree::CONFIG_PATH).is_some_and(|n| {
                            crate::tree::acl::check_acl(
                                &spec.tree.acl_of(n),
                                crate::proto::perms::WRITE,
                                auth,
                                &self.opts.prepare.auth_schemes,
                            )
                        });
                    let judging = reconfig::Judging {
                        enabled: self.opts.prepare.reconfig_enabled,
                        current: current.as_ref(),
                        in_progress: self.peer.reconfig_in_progress(),
                        may_write_config: may_write,
                    };
                    let peer = &self.peer;
                    let txn = match reconfig::judge(r, &judging, |m| {
                        peer.is_quorum_synced(&m.voters())
                    }) {
                        // The new membership, its version this txn's zxid: a SetDataTxn of
                        // /zookeeper/config, as ZooKeeper's reconfig txn.
                        Ok(mut next) => {
                            next.version = zxid.get();
                            tracing::info!(
                                zxid = format_args!("{zxid:#x}"),
                                voters = ?next.voters(),
                                observers = ?next.observers(),
                                "reconfig: proposing a new membership"
                            );
                            Txn::Reconfig(crate::proto::SetDataTxn {
                                path: crate::tree::CONFIG_PATH.to_string(),
                                data: next.text().into_bytes().into(),
                                version: -1,
                            })
                        }
                        Err(e) => Txn::error(e),
                    };
                    (header(session_id, cxid, &txn), txn, false)
                } else {
                    let ctx = SessionContext { session_id, auth, local_session };
                    let (h, t) = prepare_txn(
                        &spec.tree,
                        &ctx,
                        &self.opts.prepare,
                        req,
                        cxid,
                        zxid.to_wire(),
                        time,
                    );
                    (h, t, false)
                }
            }
        };
        // The txn's size, checked against the limit every peer and the log accept: a
        // client's txn that is too large becomes an error txn answered MARSHALLINGERROR; a
        // closeSession too large to list its ephemerals is logged with an empty list (every
        // server then removes them from its own ephemeral index, as ZooKeeper's killSession
        // does with paths the txn does not name). So no client input reaches a log error.
        let max = self.opts.txn_bytes_max;
        let mut payload = Vec::with_capacity(size_hint);
        hdr.write(&mut payload);
        txn.write(&mut payload);
        if payload.len() + DIGEST_BYTES > max {
            let replacement = match &txn {
                Txn::CloseSession(_) => {
                    // An empty list, not none: a closeSession without a body is pre-3.6's
                    // form, which cannot be told apart from the digest after it on replay.
                    Txn::CloseSession(CloseSessionTxn { paths_to_delete: Some(Vec::new()) })
                }
                _ if server_made => {
                    tracing::warn!(
                        zxid = format_args!("{zxid:#x}"),
                        bytes = payload.len(),
                        max,
                        "a txn of the server's own is over the txn limit; not logged"
                    );
                    return Err(Err(NotProposed::TooLarge));
                }
                _ => Txn::error(ErrorCode::MarshallingError),
            };
            tracing::info!(
                session = format_args!("{:#x}", hdr.client_id),
                bytes = payload.len() + DIGEST_BYTES,
                max,
                "txn over the limit (jute.maxbuffer + jute.maxbuffer.extrasize); refused"
            );
            txn = replacement;
            hdr.op = txn.opcode().code();
            payload.clear();
            hdr.write(&mut payload);
            txn.write(&mut payload);
            assert!(payload.len() + DIGEST_BYTES <= max, "a refusal txn fits any limit");
        }
        let session_change = match &txn {
            Txn::CreateSession(t) => Some((hdr.client_id, Some(t.time_out))),
            Txn::CloseSession(_) => Some((hdr.client_id, None)),
            _ => None,
        };
        let mut entry = TxnEntry { header: hdr, txn, digest: None };
        let spec = self.spec.as_mut().expect("built");
        let outcome = spec.apply(&entry);
        let digest = spec.tree.digest();
        let d = TxnDigest { version: 2, tree_digest: digest };
        d.write(&mut payload);
        entry.digest = Some(d);
        let version = self.opts.boundary_every_txn.then(|| spec.tree.clone());
        if version.is_some() {
            self.boundaries.push_back(zxid);
        }
        let data = Bytes::from(payload);
        let bytes = data.len() as u64;
        self.pending.push_back(Pending {
            zxid,
            data: data.clone(),
            local: Some(Box::new(Applied { entry, outcome, local: true, version, digest, bytes })),
            session_change,
        });
        if let Err(f) = self.step_into(Event::Propose { zxid, data }, out) {
            return Err(Ok(f));
        }
        Ok(zxid)
    }
}
