//! The ZAB peer driven one event at a time, asserting the exact commands that come out.
//!
//! Each test names the step it covers: the phase of the Zab paper (discovery, synchronization,
//! broadcast) and the action of ZooKeeper's TLA+ system specification
//! (zookeeper-specifications/system-spec/zk-3.7/ZkV3_7_0.tla: LeaderProcessFOLLOWERINFO,
//! FollowerProcessLEADERINFO, LeaderProcessACKEPOCH, LeaderSyncFollower,
//! FollowerProcessSyncMessage, FollowerProcessPROPOSALInSync, FollowerProcessCOMMITInSync,
//! FollowerProcessNEWLEADER, LeaderProcessACKLD, FollowerProcessUPTODATE, LeaderProcessRequest,
//! FollowerProcessPROPOSAL, LeaderProcessACK, FollowerProcessCOMMIT) or of
//! FastLeaderElection.tla.

use bytes::Bytes;
use corral_server::proto::Id;
use corral_server::zab::wire::{encode_i32, encode_touches, ForwardedRequest, PROTOCOL_VERSION};
use corral_server::zab::{
    make_zxid, Command, ConnId, Event, HistoryWindow, LearnerInfo, Notification, PacketType, Peer,
    PeerConfig, PeerState, QuorumPacket, Role, ServerState, Sid, SyncPlan, Vote, Zxid,
};

fn cfg() -> PeerConfig {
    let mut c = PeerConfig::new([1, 2, 3], [4]);
    c.finalize_wait = 1;
    c.commit_log_count = 3;
    c.tick_ms = 1000;
    c
}

fn z(e: u32, c: u32) -> Zxid {
    make_zxid(e, c)
}

fn data(zxid: Zxid) -> Bytes {
    Bytes::from(format!("txn {zxid:#x}"))
}

fn state(accepted: u32, current: u32, snapshot: Zxid, zxids: &[Zxid]) -> PeerState {
    let mut h = HistoryWindow::new(snapshot, 100);
    for &x in zxids {
        h.push(x, data(x));
    }
    PeerState {
        accepted_epoch: accepted,
        current_epoch: current,
        history: h,
        snapshot_zxid: snapshot,
        logged_config: None,
    }
}

fn step(p: &mut Peer, ev: Event) -> Vec<Command> {
    let mut out = Vec::new();
    p.step(ev, &mut out);
    out
}

fn pkt(kind: PacketType, zxid: Zxid) -> QuorumPacket {
    QuorumPacket::new(kind, zxid.to_wire())
}

fn pktd(kind: PacketType, zxid: i64, d: Bytes) -> QuorumPacket {
    QuorumPacket::with_data(kind, zxid, d)
}

fn send(to: Sid, packet: QuorumPacket) -> Command {
    Command::Send { to, packet }
}

/// A packet from `from` on connection number `from` (the tests number a peer's first
/// connection after it).
fn recv(p: &mut Peer, from: Sid, packet: QuorumPacket) -> Vec<Command> {
    recv_on(p, from, from, packet)
}

fn recv_on(p: &mut Peer, from: Sid, conn: ConnId, packet: QuorumPacket) -> Vec<Command> {
    step(p, Event::Packet { from, conn, packet })
}

fn vote(state: ServerState, leader: Sid, zxid: Zxid, ee: i64, pe: u32) -> Notification {
    Vote {
        leader: leader as i64,
        zxid: zxid.to_wire(),
        election_epoch: ee,
        peer_epoch: i64::from(pe),
    }
    .notification(state, &Bytes::new())
}

fn follower_info(sid: Sid, accepted: u32) -> QuorumPacket {
    let li = LearnerInfo {
        server_id: sid as i64,
        protocol_version: PROTOCOL_VERSION,
        config_version: 0,
    };
    pktd(PacketType::FollowerInfo, (z(accepted, 0)).to_wire(), li.encode())
}

fn observer_info(sid: Sid, accepted: u32) -> QuorumPacket {
    let li = LearnerInfo {
        server_id: sid as i64,
        protocol_version: PROTOCOL_VERSION,
        config_version: 0,
    };
    pktd(PacketType::ObserverInfo, (z(accepted, 0)).to_wire(), li.encode())
}

fn ack_epoch(last: Zxid, current: i32) -> QuorumPacket {
    pktd(PacketType::AckEpoch, last.to_wire(), encode_i32(current))
}

/// Peer 1 elected leader with peer 2's vote (FLEHandleNotmsg, FLEWaitNewNotmsg).
fn elected_leader(st: PeerState) -> Peer {
    elected_leader_with(cfg(), st)
}

fn elected_leader_with(c: PeerConfig, st: PeerState) -> Peer {
    let (last, current) = (st.history.last(), st.current_epoch);
    let (mut p, cmds) = Peer::new(c, 1, st);
    assert_eq!(cmds.len(), 2, "notifies voters 2 and 3");
    assert!(step(
        &mut p,
        Event::Notification { from: 2, n: vote(ServerState::Looking, 1, last, 1, current) }
    )
    .is_empty());
    assert_eq!(
        step(&mut p, Event::Tick),
        vec![Command::RoleChanged(Role::Leading { epoch: None, established: false })]
    );
    p
}

/// Peer `id` joins leader 1 of an epoch whose current epoch is `leader_epoch`: peer 3 says it
/// follows 1 and 1 says it leads (FLEHandleNotmsg with FOLLOWING/LEADING notifications).
fn elected_learner(id: Sid, st: PeerState, leader_last: Zxid, leader_epoch: u32) -> Peer {
    elected_learner_with(cfg(), id, st, leader_last, leader_epoch)
}

fn elected_learner_with(
    c: PeerConfig,
    id: Sid,
    st: PeerState,
    leader_last: Zxid,
    leader_epoch: u32,
) -> Peer {
    let (mut p, _) = Peer::new(c, id, st);
    let f = vote(ServerState::Following, 1, leader_last, 1, leader_epoch);
    assert!(step(&mut p, Event::Notification { from: 3, n: f })
        .iter()
        .all(|c| matches!(c, Command::SendNotification { .. })));
    let l = vote(ServerState::Leading, 1, leader_last, 1, leader_epoch);
    let cmds = step(&mut p, Event::Notification { from: 1, n: l });
    assert_eq!(cmds[0], Command::Connect { to: 1 }, "{cmds:?}");
    p
}

/// Leader 1 in epoch 2 with follower 2 synced (empty DIFF) and established.
fn established_leader() -> Peer {
    established_leader_with(cfg())
}

fn established_leader_with(c: PeerConfig) -> Peer {
    let mut p = elected_leader_with(c, state(1, 1, Zxid::ZERO, &[z(1, 1)]));
    step(&mut p, Event::Connected { peer: 2, conn: 2 });
    recv(&mut p, 2, follower_info(2, 1));
    recv(&mut p, 2, ack_epoch(z(1, 1), 1));
    let cmds = recv(&mut p, 2, pkt(PacketType::Ack, z(2, 0)));
    assert!(cmds.contains(&Command::Established { epoch: 2 }));
    p
}

/// Follower 2 synced with leader 1 in epoch 2 and up to date.
fn active_follower() -> Peer {
    let mut p = elected_learner(2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 1), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    recv(&mut p, 1, pkt(PacketType::Diff, z(1, 1)));
    recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0)));
    recv(&mut p, 1, pkt(PacketType::UpToDate, Zxid(u64::MAX)));
    assert!(p.is_serving());
    p
}

/// A learner answers no PING before it is up to date: ZooKeeper's leader waits, after
/// NEWLEADER, for the ACK and nothing else (a PING first: "Next packet was supposed to be an
/// ACK", and the learner is dropped). Found with quorum TLS against a ZooKeeper leader.
#[test]
fn a_syncing_learner_answers_pings_only_once_up_to_date() {
    let mut p = elected_learner(2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 1), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    let ping = || pkt(PacketType::Ping, z(2, 0));
    assert!(recv(&mut p, 1, ping()).is_empty(), "before LEADERINFO");
    recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    assert!(recv(&mut p, 1, ping()).is_empty(), "waiting for the sync");
    recv(&mut p, 1, pkt(PacketType::Diff, z(1, 1)));
    assert!(recv(&mut p, 1, ping()).is_empty(), "syncing");
    recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0)));
    let after = recv(&mut p, 1, ping());
    assert!(
        !after
            .iter()
            .any(|c| matches!(c, Command::Send { packet, .. } if packet.kind == PacketType::Ping)),
        "after NEWLEADER, before UPTODATE: {after:?}"
    );
    recv(&mut p, 1, pkt(PacketType::UpToDate, Zxid(u64::MAX)));
    assert!(p.is_serving());
    let active = recv(&mut p, 1, ping());
    assert!(
        active
            .iter()
            .any(|c| matches!(c, Command::Send { packet, .. } if packet.kind == PacketType::Ping)),
        "up to date: {active:?}"
    );
}

// Discovery and synchronization, leader side: LeaderProcessFOLLOWERINFO (epoch = max accepted
// + 1 once a quorum connected, persisted before LEADERINFO), LeaderProcessACKEPOCH (a quorum of
// epoch acks: current epoch persisted), LeaderSyncFollower (DIFF with PROPOSAL/COMMIT pairs,
// then NEWLEADER), LeaderProcessACKLD (a quorum of NEWLEADER acks: established, history
// committed, UPTODATE).
#[test]
fn leader_discovery_sync_and_establishment() {
    let mut p = elected_leader(state(1, 1, Zxid::ZERO, &[z(1, 1), z(1, 2)]));
    assert!(step(&mut p, Event::Connected { peer: 2, conn: 2 }).is_empty());
    assert_eq!(
        recv(&mut p, 2, follower_info(2, 1)),
        vec![
            Command::PersistAcceptedEpoch(2),
            send(
                2,
                pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION))
            ),
        ]
    );
    assert_eq!(
        recv(&mut p, 2, ack_epoch(z(1, 1), 1)),
        vec![
            Command::PersistCurrentEpoch(2),
            Command::SyncStarted { learner: 2, plan: SyncPlan::Diff { from: z(1, 1) } },
            send(2, pkt(PacketType::Diff, z(1, 2))),
            send(2, pktd(PacketType::Proposal, (z(1, 2)).to_wire(), data(z(1, 2)))),
            send(2, pkt(PacketType::Commit, z(1, 2))),
            send(2, pkt(PacketType::NewLeader, z(2, 0))),
        ]
    );
    assert_eq!(p.next_zxid(), None, "no proposals before the epoch is established");
    assert_eq!(
        recv(&mut p, 2, pkt(PacketType::Ack, z(2, 0))),
        vec![
            Command::Established { epoch: 2 },
            Command::Commit(z(1, 2)),
            Command::RoleChanged(Role::Leading { epoch: Some(2), established: true }),
            send(2, pkt(PacketType::UpToDate, Zxid(u64::MAX))),
        ]
    );
    assert_eq!(p.next_zxid(), Some(z(2, 1)));
}

// Discovery: the epoch is the largest accepted epoch of the connecting quorum plus one.
#[test]
fn new_epoch_exceeds_every_accepted_epoch() {
    let mut p = elected_leader(state(3, 3, Zxid::ZERO, &[]));
    step(&mut p, Event::Connected { peer: 2, conn: 2 });
    let cmds = recv(&mut p, 2, follower_info(2, 7));
    assert_eq!(cmds[0], Command::PersistAcceptedEpoch(8));
    assert_eq!(p.accepted_epoch(), 8);
}

// LeaderProcessACKEPOCH: a follower whose (currentEpoch, last zxid) is more recent than the
// leader's is refused ("Follower is ahead of the leader").
#[test]
fn follower_ahead_of_leader_is_refused() {
    let mut p = elected_leader(state(1, 1, Zxid::ZERO, &[z(1, 1)]));
    step(&mut p, Event::Connected { peer: 2, conn: 2 });
    recv(&mut p, 2, follower_info(2, 1));
    assert_eq!(
        recv(&mut p, 2, ack_epoch(z(1, 2), 1)),
        vec![Command::Disconnect { peer: 2, conn: Some(2) }]
    );
}

// LeaderProcessACKEPOCH: an ack with epoch -1 (the learner had already accepted this epoch)
// does not count towards the quorum.
#[test]
fn repeated_epoch_ack_does_not_count() {
    let mut p = elected_leader(state(1, 1, Zxid::ZERO, &[]));
    step(&mut p, Event::Connected { peer: 2, conn: 2 });
    recv(&mut p, 2, follower_info(2, 1));
    assert!(recv(&mut p, 2, ack_epoch(Zxid::ZERO, -1)).is_empty());
}

// LeaderSyncFollower: SNAP for a learner with a txn the leader never had in an older epoch,
// SNAP for one behind the window, TRUNC alone for one ahead of the leader.
#[test]
fn leader_chooses_trunc_diff_snap_and_trunc() {
    // Window of 3: base 1.1, entries 1.2, 2.1, 2.2.
    let mut p = elected_leader(state(2, 2, Zxid::ZERO, &[z(1, 1), z(1, 2), z(2, 1), z(2, 2)]));
    for sid in [2, 3] {
        step(&mut p, Event::Connected { peer: sid, conn: sid });
        recv(&mut p, sid, follower_info(sid, 2));
    }
    step(&mut p, Event::Connected { peer: 4, conn: 4 });
    recv(&mut p, 4, observer_info(4, 2));
    // Peer 2 has 1.3, which the leader never had, and the leader's next txn is 2.1: a TRUNC
    // would cross an epoch boundary, which ZooKeeper's LearnerHandler never sends ("Cannot send
    // TRUNC to peer ... peer zxid is from different epoch"): SNAP. (TRUNC+DIFF within an epoch:
    // zab::history's unit tests.)
    assert_eq!(
        recv(&mut p, 2, ack_epoch(z(1, 3), 1)),
        vec![
            Command::PersistCurrentEpoch(3),
            Command::SyncStarted { learner: 2, plan: SyncPlan::Snap },
            send(2, pkt(PacketType::Snap, z(2, 2))),
            Command::SendSnapshot { to: 2, zxid: z(2, 2) },
            send(2, pkt(PacketType::NewLeader, z(3, 0))),
        ]
    );
    // Peer 3 is before the window: SNAP at the leader's last zxid.
    assert_eq!(
        recv(&mut p, 3, ack_epoch(Zxid::ZERO, 0)),
        vec![
            Command::SyncStarted { learner: 3, plan: SyncPlan::Snap },
            send(3, pkt(PacketType::Snap, z(2, 2))),
            Command::SendSnapshot { to: 3, zxid: z(2, 2) },
            send(3, pkt(PacketType::NewLeader, z(3, 0))),
        ]
    );
    // Observer 4 is ahead of the leader: TRUNC alone.
    assert_eq!(
        recv(&mut p, 4, ack_epoch(z(2, 5), 2)),
        vec![
            Command::SyncStarted { learner: 4, plan: SyncPlan::Trunc { to: z(2, 2) } },
            send(4, pkt(PacketType::Trunc, z(2, 2))),
            send(4, pkt(PacketType::NewLeader, z(3, 0))),
        ]
    );
}

// Learner side of discovery and synchronization: ConnectAndFollowerSendFOLLOWERINFO,
// FollowerProcessLEADERINFO (accepted epoch persisted before ACKEPOCH),
// FollowerProcessSyncMessage (DIFF), FollowerProcessPROPOSALInSync,
// FollowerProcessCOMMITInSync, FollowerProcessNEWLEADER (history durable, then the current
// epoch, then the ack: ZOOKEEPER-4643/4646), FollowerProcessUPTODATE (what the sync committed
// is applied only now).
#[test]
fn follower_discovery_and_diff_sync() {
    let mut p = elected_learner(2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 2), 1);
    let li = LearnerInfo { server_id: 2, protocol_version: PROTOCOL_VERSION, config_version: 0 };
    assert_eq!(
        step(&mut p, Event::Connected { peer: 1, conn: 1 }),
        vec![send(1, pktd(PacketType::FollowerInfo, (z(1, 0)).to_wire(), li.encode()))]
    );
    assert_eq!(
        recv(
            &mut p,
            1,
            pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION))
        ),
        vec![Command::PersistAcceptedEpoch(2), send(1, ack_epoch(z(1, 1), 1)),]
    );
    assert!(recv(&mut p, 1, pkt(PacketType::Diff, z(1, 2))).is_empty());
    assert!(
        recv(&mut p, 1, pktd(PacketType::Proposal, (z(1, 2)).to_wire(), data(z(1, 2)))).is_empty()
    );
    assert!(recv(&mut p, 1, pkt(PacketType::Commit, z(1, 2))).is_empty());
    // The synced txn is appended; no ack and no new epoch until it is durable. It is not
    // committed yet: the leader's history is committed only once a quorum acks NEWLEADER.
    assert_eq!(
        recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0))),
        vec![Command::AppendTxns(vec![(z(1, 2), data(z(1, 2)))])]
    );
    assert_eq!(p.current_epoch(), 1);
    assert_eq!(
        step(&mut p, Event::Durable { zxid: z(1, 2) }),
        vec![Command::PersistCurrentEpoch(2), send(1, pkt(PacketType::Ack, z(2, 0))),]
    );
    assert!(!p.is_serving());
    // UPTODATE: the leader is established, so what it committed in the sync is applied
    // (ZooKeeper's Learner.syncWithLeader commits packetsCommitted then), before serving.
    assert_eq!(
        recv(&mut p, 1, pkt(PacketType::UpToDate, Zxid(u64::MAX))),
        vec![
            Command::Commit(z(1, 2)),
            Command::UpToDate { epoch: 2, synced_by: "DIFF" },
            Command::RoleChanged(Role::Following { leader: 1, serving: true }),
            send(1, pkt(PacketType::Ack, z(2, 0))),
        ]
    );
    assert!(p.is_serving());
}

// FollowerProcessLEADERINFO: a leader epoch below the accepted epoch is an error; back to
// LOOKING.
#[test]
fn follower_refuses_an_older_epoch() {
    let mut p = elected_learner(2, state(5, 4, Zxid::ZERO, &[]), Zxid::ZERO, 4);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    let cmds = recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(3, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    assert_eq!(
        cmds[..2],
        [Command::Disconnect { peer: 1, conn: Some(1) }, Command::RoleChanged(Role::Looking)]
    );
    assert_eq!(p.role(), Role::Looking);
}

// FollowerProcessSyncMessage (TRUNC) and FollowerProcessNEWLEADER: the log is cut, which is
// durable at once, so the ack follows immediately.
#[test]
fn follower_trunc() {
    let mut p =
        elected_learner(2, state(1, 1, Zxid::ZERO, &[z(1, 1), z(1, 2), z(1, 3)]), z(1, 1), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    assert!(recv(&mut p, 1, pkt(PacketType::Trunc, z(1, 1))).is_empty());
    assert_eq!(
        recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0))),
        vec![
            Command::TruncateLog(z(1, 1)),
            Command::PersistCurrentEpoch(2),
            send(1, pkt(PacketType::Ack, z(2, 0))),
        ]
    );
    assert_eq!(p.last_zxid(), z(1, 1));
}

/// A learner of leader 1 (epoch 2) that has just been told a SNAP at 1:5 follows.
fn learner_told_snap() -> Peer {
    let mut p = elected_learner(2, state(1, 1, Zxid::ZERO, &[]), z(1, 5), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    assert!(recv(&mut p, 1, pkt(PacketType::Snap, z(1, 5))).is_empty());
    p
}

// FollowerProcessSyncMessage (SNAP): the snapshot is installed at NEWLEADER, then the epoch,
// then the ack.
#[test]
fn follower_snap() {
    let mut p = learner_told_snap();
    let body = received(z(1, 5));
    assert!(step(&mut p, Event::Snapshot { from: 1, conn: 1, body: body.clone() }).is_empty());
    assert_eq!(
        recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0))),
        vec![
            Command::InstallSnapshot { zxid: z(1, 5), body: Some(body), fuzzy_until: Zxid::ZERO },
            Command::PersistCurrentEpoch(2),
            send(1, pkt(PacketType::Ack, z(2, 0))),
        ]
    );
}

// A SNAP from a ZooKeeper leader is fuzzy: its tree was serialized while the leader went on
// applying what it committed, and every txn it committed before NEWLEADER may already be in
// it. The snapshot says so: those txns' digests are not compared when they are applied.
#[test]
fn a_snapshot_is_fuzzy_up_to_the_last_commit_before_newleader() {
    let mut p = learner_told_snap();
    let body = received(z(1, 5));
    assert!(step(&mut p, Event::Snapshot { from: 1, conn: 1, body: body.clone() }).is_empty());
    for c in 6..=8 {
        recv(&mut p, 1, pktd(PacketType::Proposal, z(1, c).to_wire(), data(z(1, c))));
    }
    for c in 6..=7 {
        recv(&mut p, 1, pkt(PacketType::Commit, z(1, c)));
    }
    let cmds = recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0)));
    assert_eq!(
        cmds[0],
        Command::InstallSnapshot { zxid: z(1, 5), body: Some(body), fuzzy_until: z(1, 7) },
        "{cmds:?}"
    );
}

// A TRUNC below the learner's snapshot cannot be applied: the learner leaves the durable state
// alone, and on the next sync with the same leader reports an empty history and rebuilds.
#[test]
fn trunc_below_snapshot_asks_for_everything() {
    let mut p = elected_learner(2, state(1, 1, z(1, 5), &[z(1, 6)]), z(1, 6), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    let cmds = recv(&mut p, 1, pkt(PacketType::Trunc, z(1, 3)));
    assert_eq!(
        cmds[..2],
        [Command::Disconnect { peer: 1, conn: Some(1) }, Command::RoleChanged(Role::Looking)]
    );
    // Rejoin leader 1 (FLEHandleNotmsg with FOLLOWING/LEADING votes of the established epoch).
    step(
        &mut p,
        Event::Notification { from: 3, n: vote(ServerState::Following, 1, z(1, 3), 1, 2) },
    );
    let cmds = step(
        &mut p,
        Event::Notification { from: 1, n: vote(ServerState::Leading, 1, z(1, 3), 1, 2) },
    );
    assert_eq!(cmds[0], Command::Connect { to: 1 });
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    assert_eq!(
        recv(
            &mut p,
            1,
            pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION))
        ),
        vec![send(1, ack_epoch(Zxid::ZERO, -1))]
    );
    recv(&mut p, 1, pkt(PacketType::Diff, z(1, 3)));
    for c in 1..=3 {
        recv(&mut p, 1, pktd(PacketType::Proposal, (z(1, c)).to_wire(), data(z(1, c))));
        recv(&mut p, 1, pkt(PacketType::Commit, z(1, c)));
    }
    assert_eq!(
        recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0))),
        vec![
            Command::InstallSnapshot { zxid: Zxid::ZERO, body: None, fuzzy_until: Zxid::ZERO },
            Command::AppendTxns((1..=3).map(|c| (z(1, c), data(z(1, c)))).collect()),
        ]
    );
}

// Broadcast: LeaderProcessRequest (the proposal is logged and sent to followers),
// LeaderProcessACK (the leader's own ack comes from its durable log; a quorum commits, in
// order).
#[test]
fn leader_broadcast_and_quorum_commit() {
    let mut p = established_leader();
    let z1 = p.next_zxid().expect("established");
    assert_eq!(z1, z(2, 1));
    assert_eq!(
        step(&mut p, Event::Propose { zxid: z1, data: data(z1) }),
        vec![
            Command::AppendTxns(vec![(z1, data(z1))]),
            send(2, pktd(PacketType::Proposal, z1.to_wire(), data(z1))),
        ]
    );
    let z2 = z(2, 2);
    step(&mut p, Event::Propose { zxid: z2, data: data(z2) });
    // The follower acks 2.2 first: no commit may overtake 2.1.
    assert!(recv(&mut p, 2, pkt(PacketType::Ack, z2)).is_empty());
    // The leader's own log makes both durable: 2.1 lacks the follower's ack still.
    assert!(step(&mut p, Event::Durable { zxid: z2 }).is_empty());
    assert_eq!(
        recv(&mut p, 2, pkt(PacketType::Ack, z1)),
        vec![
            send(2, pkt(PacketType::Commit, z1)),
            send(2, pkt(PacketType::Commit, z2)),
            Command::Commit(z2),
        ]
    );
}

// The test-only broken mode (corral.test.unsafeCommitWithoutQuorum) that fault tests must
// catch: the leader commits on its own durable log, no follower's ack needed.
#[test]
fn unsafe_commit_without_quorum_commits_on_the_leaders_own_ack() {
    let mut p = established_leader_with(PeerConfig { unsafe_commit_without_quorum: true, ..cfg() });
    let z1 = p.next_zxid().expect("established");
    step(&mut p, Event::Propose { zxid: z1, data: data(z1) });
    assert_eq!(
        step(&mut p, Event::Durable { zxid: z1 }),
        vec![send(2, pkt(PacketType::Commit, z1)), Command::Commit(z1)]
    );
    // Without the key the same proposal waits for a follower.
    let mut q = established_leader();
    let z1 = q.next_zxid().expect("established");
    step(&mut q, Event::Propose { zxid: z1, data: data(z1) });
    assert!(step(&mut q, Event::Durable { zxid: z1 }).is_empty());
}

// FollowerProcessPROPOSAL / FollowerProcessCOMMIT: a proposal is acked only once durable
// (ZOOKEEPER-4646); a commit applies.
#[test]
fn follower_acks_only_durable_proposals() {
    let mut p = active_follower();
    let z1 = z(2, 1);
    assert_eq!(
        recv(&mut p, 1, pktd(PacketType::Proposal, z1.to_wire(), data(z1))),
        vec![Command::AppendTxns(vec![(z1, data(z1))])]
    );
    assert!(recv(&mut p, 1, pkt(PacketType::Commit, z1)) == vec![Command::Commit(z1)]);
    assert_eq!(step(&mut p, Event::Durable { zxid: z1 }), vec![send(1, pkt(PacketType::Ack, z1))]);
}

// Observers: synced like followers, never ack proposals, learn commits by INFORM.
#[test]
fn observer_learns_by_inform() {
    let mut leader = established_leader();
    step(&mut leader, Event::Connected { peer: 4, conn: 4 });
    assert_eq!(
        recv(&mut leader, 4, observer_info(4, 1)),
        vec![send(
            4,
            pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION))
        )]
    );
    recv(&mut leader, 4, ack_epoch(z(1, 1), 1));
    assert_eq!(
        recv(&mut leader, 4, pkt(PacketType::Ack, z(2, 0))),
        vec![send(4, pkt(PacketType::UpToDate, Zxid(u64::MAX)))]
    );
    let z1 = z(2, 1);
    let cmds = step(&mut leader, Event::Propose { zxid: z1, data: data(z1) });
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::Send { to: 4, .. })),
        "no PROPOSAL to observers"
    );
    step(&mut leader, Event::Durable { zxid: z1 });
    assert_eq!(
        recv(&mut leader, 2, pkt(PacketType::Ack, z1)),
        vec![
            send(2, pkt(PacketType::Commit, z1)),
            send(4, pktd(PacketType::Inform, z1.to_wire(), data(z1))),
            Command::Commit(z1),
        ]
    );

    let mut obs = elected_learner(4, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 1), 1);
    step(&mut obs, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut obs,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    recv(&mut obs, 1, pkt(PacketType::Diff, z(1, 1)));
    recv(&mut obs, 1, pkt(PacketType::NewLeader, z(2, 0)));
    recv(&mut obs, 1, pkt(PacketType::UpToDate, Zxid(u64::MAX)));
    assert_eq!(obs.role(), Role::Observing { leader: 1, serving: true });
    assert_eq!(
        recv(&mut obs, 1, pktd(PacketType::Inform, z1.to_wire(), data(z1))),
        vec![Command::AppendTxns(vec![(z1, data(z1))]), Command::Commit(z1),]
    );
    assert!(step(&mut obs, Event::Durable { zxid: z1 }).is_empty(), "observers never ack");
}

// Learners forward writes as REQUEST; the leader hands them to its runtime to prepare. A
// forwarded sync is answered once every earlier proposal has committed.
#[test]
fn requests_and_sync_are_forwarded() {
    let mut f = active_follower();
    let req = ForwardedRequest {
        session_id: 7,
        cxid: 1,
        op: 1,
        body: Bytes::from_static(b"create"),
        auth: vec![Id { scheme: "digest".into(), id: "u:h".into() }],
    };
    // The client's ids travel as the packet's authinfo (ZooKeeper's Learner.request), and the
    // leader hands them on with the request, so ACLs are checked against the asking client.
    let mut forwarded = pktd(PacketType::Request, -1, req.encode());
    forwarded.authinfo = Some(req.auth.clone());
    assert_eq!(
        step(&mut f, Event::ClientRequest { request: req.clone() }),
        vec![send(1, forwarded.clone())]
    );
    assert_eq!(recv(&mut f, 1, pkt(PacketType::Sync, Zxid::ZERO)), vec![Command::SyncDone]);

    let mut l = established_leader();
    assert_eq!(recv(&mut l, 2, forwarded), vec![Command::Request { from: 2, request: req }]);
    let sync =
        ForwardedRequest { session_id: 7, cxid: 2, op: 9, body: Bytes::new(), auth: Vec::new() };
    assert_eq!(
        recv(&mut l, 2, pktd(PacketType::Request, -1, sync.encode())),
        vec![send(2, pkt(PacketType::Sync, Zxid::ZERO))]
    );
    let z1 = z(2, 1);
    step(&mut l, Event::Propose { zxid: z1, data: data(z1) });
    assert!(recv(&mut l, 2, pktd(PacketType::Request, -1, sync.encode())).is_empty());
    // A proposal prepared in an earlier epoch (the runtime raced a role change) is dropped.
    assert!(step(&mut l, Event::Propose { zxid: z(1, 9), data: data(z(1, 9)) }).is_empty());
    step(&mut l, Event::Durable { zxid: z1 });
    assert_eq!(
        recv(&mut l, 2, pkt(PacketType::Ack, z1)),
        vec![
            send(2, pkt(PacketType::Commit, z1)),
            Command::Commit(z1),
            send(2, pkt(PacketType::Sync, Zxid::ZERO)),
        ]
    );
}

// Broadcast liveness checks: PING every tick; a follower silent for more than syncLimit ticks
// is dropped, and a leader left without a quorum gives up (Leader.lead's "not sufficient
// followers synced").
#[test]
fn silent_follower_is_dropped_and_leader_steps_down() {
    let mut p = established_leader();
    for _ in 0..5 {
        assert_eq!(step(&mut p, Event::Tick), vec![send(2, pkt(PacketType::Ping, z(2, 0)))]);
    }
    let cmds = step(&mut p, Event::Tick);
    assert_eq!(
        cmds[..2],
        [Command::Disconnect { peer: 2, conn: Some(2) }, Command::RoleChanged(Role::Looking)]
    );
    assert_eq!(p.role(), Role::Looking);
}

// A learner that hears nothing from its leader for syncLimit ticks gives up on it.
#[test]
fn follower_gives_up_on_a_silent_leader() {
    let mut p = active_follower();
    for _ in 0..5 {
        assert!(step(&mut p, Event::Tick).is_empty());
    }
    let cmds = step(&mut p, Event::Tick);
    assert_eq!(
        cmds[..2],
        [Command::Disconnect { peer: 1, conn: Some(1) }, Command::RoleChanged(Role::Looking)]
    );
}

// Discovery and sync must end within initLimit ticks.
#[test]
fn leader_without_quorum_gives_up_after_init_limit() {
    let mut p = elected_leader(state(1, 1, Zxid::ZERO, &[]));
    for _ in 0..10 {
        assert!(step(&mut p, Event::Tick).is_empty());
    }
    let cmds = step(&mut p, Event::Tick);
    assert_eq!(cmds[0], Command::RoleChanged(Role::Looking));
}

// Sessions: the leader expires global sessions; learners' PING replies and REVALIDATE keep
// them alive.
#[test]
fn leader_tracks_session_expiry() {
    let mut p = established_leader();
    step(&mut p, Event::SessionCreated { session_id: 0x55, timeout: 3000 });
    step(&mut p, Event::Tick);
    step(&mut p, Event::Tick);
    // The follower's ping reply touches the session.
    assert!(recv(&mut p, 2, pktd(PacketType::Ping, 0, encode_touches(&[(0x55, 3000)]))).is_empty());
    step(&mut p, Event::Tick);
    step(&mut p, Event::Tick);
    // Three ticks after the touch is its timeout for a touch at the start of the tick; the
    // touch came later in it, so the session lives to the tick after (ZooKeeper rounds the
    // deadline up to the next tick).
    assert_eq!(step(&mut p, Event::Tick), vec![send(2, pkt(PacketType::Ping, z(2, 0)))]);
    let cmds = step(&mut p, Event::Tick);
    assert_eq!(
        cmds,
        vec![send(2, pkt(PacketType::Ping, z(2, 0))), Command::ExpireSession { session_id: 0x55 }]
    );
    let reply = recv(
        &mut p,
        2,
        pktd(PacketType::Revalidate, -1, corral_server::zab::wire::encode_revalidate(0x66, 3000)),
    );
    assert_eq!(
        reply,
        vec![send(
            2,
            pktd(
                PacketType::Revalidate,
                -1,
                corral_server::zab::wire::encode_revalidate_reply(0x66, false)
            )
        )]
    );
}

// A peer not LOOKING answers a LOOKING peer with its vote and state (FLE WorkerReceiver), and
// the vote carries the epoch it now follows (ZOOKEEPER-1732).
#[test]
fn established_peers_answer_looking_peers() {
    let mut p = established_leader();
    let cmds = step(
        &mut p,
        Event::Notification { from: 3, n: vote(ServerState::Looking, 3, Zxid::ZERO, 4, 0) },
    );
    assert_eq!(
        cmds,
        vec![Command::SendNotification { to: 3, n: vote(ServerState::Leading, 1, z(1, 1), 1, 2) }]
    );
}

// An ensemble of one: election, discovery and establishment without any message.
#[test]
fn standalone_establishes_alone() {
    let mut c = PeerConfig::new([1], []);
    c.finalize_wait = 1;
    let (mut p, cmds) = Peer::new(c, 1, state(1, 1, Zxid::ZERO, &[z(1, 4)]));
    assert!(cmds.is_empty());
    assert_eq!(
        step(&mut p, Event::Tick),
        vec![
            Command::RoleChanged(Role::Leading { epoch: None, established: false }),
            Command::PersistAcceptedEpoch(2),
            Command::PersistCurrentEpoch(2),
            Command::Established { epoch: 2 },
            Command::Commit(z(1, 4)),
            Command::RoleChanged(Role::Leading { epoch: Some(2), established: true }),
        ]
    );
    let z1 = p.next_zxid().expect("leader");
    step(&mut p, Event::Propose { zxid: z1, data: data(z1) });
    assert_eq!(step(&mut p, Event::Durable { zxid: z1 }), vec![Command::Commit(z1)]);
}

// The runtime must propose exactly the next zxid of the epoch: a gap would corrupt the history,
// so the peer stops rather than skip it.
#[test]
#[should_panic(expected = "but the next zxid of epoch")]
fn propose_with_the_wrong_zxid_stops() {
    let mut l = established_leader();
    step(&mut l, Event::Propose { zxid: z(2, 2), data: data(z(2, 2)) });
}

// Connection identity: news of an earlier connection cannot end the current one. A learner
// that reconnects gets a fresh handler (the old connection is closed); a late Disconnected of
// the old connection leaves the new one alone, and one of the current connection removes it.
#[test]
fn a_late_disconnect_of_an_old_connection_is_ignored() {
    let mut l = established_leader();
    // Follower 2 reconnects on connection 12: the leader closes connection 2.
    assert_eq!(
        step(&mut l, Event::Connected { peer: 2, conn: 12 }),
        vec![Command::Disconnect { peer: 2, conn: Some(2) }]
    );
    // The old connection's close is reported late: nothing changes.
    assert!(step(&mut l, Event::Disconnected { peer: 2, conn: Some(2) }).is_empty());
    // A packet still buffered from the old connection is stale: not answered.
    assert!(recv_on(&mut l, 2, 2, follower_info(2, 2)).is_empty());
    // The new connection is served: FOLLOWERINFO is answered with LEADERINFO.
    let cmds = recv_on(&mut l, 2, 12, follower_info(2, 2));
    assert!(
        cmds.iter().any(|c| matches!(c, Command::Send { to: 2, packet } if packet.kind == PacketType::LeaderInfo)),
        "{cmds:?}"
    );
    // The current connection breaking removes the learner: its packets are no longer served.
    assert!(step(&mut l, Event::Disconnected { peer: 2, conn: Some(12) }).is_empty());
    assert!(!recv_on(&mut l, 2, 12, follower_info(2, 2)).iter().any(
        |c| matches!(c, Command::Send { packet, .. } if packet.kind == PacketType::LeaderInfo)
    ));

    // Learner side: a late report of an old connection with the leader is ignored; one of the
    // current connection sends it back to LOOKING.
    let mut f = active_follower();
    assert!(step(&mut f, Event::Disconnected { peer: 1, conn: Some(7) }).is_empty());
    assert!(step(&mut f, Event::Disconnected { peer: 1, conn: None }).is_empty());
    assert!(f.is_serving());
    let cmds = step(&mut f, Event::Disconnected { peer: 1, conn: Some(1) });
    assert!(cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");
}

// Limits: a leader keeps at most `outstanding_max` proposals outstanding (next_zxid says wait
// while it does); a learner abandons a leader whose sync stages more than `sync_txns_max` txns,
// or whose SNAP payload exceeds `snapshot_bytes_max`.
#[test]
fn outstanding_proposals_and_syncs_are_bounded() {
    let mut l = established_leader_with(PeerConfig { outstanding_max: 2, ..cfg() });
    assert_eq!(l.next_zxid(), Some(z(2, 1)));
    step(&mut l, Event::Propose { zxid: z(2, 1), data: data(z(2, 1)) });
    step(&mut l, Event::Propose { zxid: z(2, 2), data: data(z(2, 2)) });
    assert_eq!(l.next_zxid(), None, "two outstanding: the runtime waits");
    step(&mut l, Event::Durable { zxid: z(2, 2) });
    recv(&mut l, 2, pkt(PacketType::Ack, z(2, 1)));
    assert_eq!(l.next_zxid(), Some(z(2, 3)), "one committed: room again");
    recv(&mut l, 2, pkt(PacketType::Ack, z(2, 2)));

    let c = PeerConfig { sync_txns_max: 3, ..cfg() };
    let mut f = elected_learner_with(c, 2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 9), 1);
    step(&mut f, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut f,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    recv(&mut f, 1, pkt(PacketType::Diff, z(1, 9)));
    for c in 2..=4 {
        assert!(recv(&mut f, 1, pktd(PacketType::Proposal, (z(1, c)).to_wire(), data(z(1, c))))
            .is_empty());
    }
    let cmds = recv(&mut f, 1, pktd(PacketType::Proposal, (z(1, 5)).to_wire(), data(z(1, 5))));
    assert!(cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");

    let c = PeerConfig { snapshot_bytes_max: 8, ..cfg() };
    let mut f = elected_learner_with(c, 2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 9), 1);
    step(&mut f, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut f,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    recv(&mut f, 1, pkt(PacketType::Snap, z(1, 9)));
    let body = received(z(1, 9));
    assert!(body.bytes() > 8);
    let cmds = step(&mut f, Event::Snapshot { from: 1, conn: 1, body });
    assert!(cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");
}

// A snapshot taken at another zxid than the SNAP said is not installed.
#[test]
fn follower_refuses_a_snapshot_of_another_zxid() {
    let mut p = learner_told_snap();
    assert!(step(&mut p, Event::Snapshot { from: 1, conn: 1, body: received(z(1, 4)) }).is_empty());
    let cmds = recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0)));
    assert!(cmds.iter().all(|c| !matches!(c, Command::InstallSnapshot { .. })), "{cmds:?}");
    assert!(cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");
}

// A server's reader may go on delivering what a closed connection had buffered after a newer
// connection with the same peer is up: such packets are stale and count for nothing. A leader
// taking a stale ACK could commit what the learner's new sync truncates; a learner taking a
// stale PROPOSAL stages it beside the new sync's and drops the leader's re-sent copy. (Found
// by the simulator once it delivered closed connections' packets late: learners committed
// txns no leader committed, their trees diverging.)
#[test]
fn packets_of_a_replaced_connection_are_stale() {
    // Leader: an ACK on the current connection counts ...
    let mut l = established_leader();
    let z1 = z(2, 1);
    step(&mut l, Event::Propose { zxid: z1, data: data(z1) });
    assert!(recv_on(&mut l, 2, 2, pkt(PacketType::Ack, z1)).is_empty(), "not durable here yet");
    assert!(step(&mut l, Event::Durable { zxid: z1 }).contains(&Command::Commit(z1)));
    // ... one of a connection the learner has replaced does not.
    let mut l = established_leader();
    step(&mut l, Event::Propose { zxid: z1, data: data(z1) });
    step(&mut l, Event::Connected { peer: 2, conn: 22 });
    assert!(recv_on(&mut l, 2, 2, pkt(PacketType::Ack, z1)).is_empty());
    assert!(
        step(&mut l, Event::Durable { zxid: z1 }).iter().all(|c| !matches!(c, Command::Commit(_))),
        "committed on a stale ack"
    );

    // Learner: a PROPOSAL on the leader's current connection is logged ...
    let z2 = z(2, 1);
    let proposal = || pktd(PacketType::Proposal, z2.to_wire(), data(z2));
    let mut f = active_follower();
    assert_eq!(recv_on(&mut f, 1, 1, proposal()), vec![Command::AppendTxns(vec![(z2, data(z2))])]);
    // ... one from another connection with the leader is not, nor is a COMMIT or a SNAP body.
    let mut f = active_follower();
    assert!(recv_on(&mut f, 1, 7, proposal()).is_empty());
    assert!(recv_on(&mut f, 1, 7, pkt(PacketType::Commit, z2)).is_empty());
    assert!(step(&mut f, Event::Snapshot { from: 1, conn: 7, body: received(z2) }).is_empty());
    assert!(f.is_serving(), "stale packets change nothing");
    assert_eq!(recv_on(&mut f, 1, 1, proposal()), vec![Command::AppendTxns(vec![(z2, data(z2))])]);
}

// A learner's acks do not outlive its connection: when it reconnects, the sync it goes through
// may TRUNCate what it acked, so the leader forgets them and waits for new ones. (Found by the
// simulator's durable-quorum check: a proposal committed while durable on 2 of 5 voters, one of
// the three acks coming from a follower that had since been truncated.)
#[test]
fn a_reconnecting_learner_must_ack_again() {
    let mut l = established_leader();
    let z1 = z(2, 1);
    step(&mut l, Event::Propose { zxid: z1, data: data(z1) });
    // Follower 2 acks before the leader's own log is durable: no quorum yet.
    assert!(recv(&mut l, 2, pkt(PacketType::Ack, z1)).is_empty());
    // It reconnects (crash and restart): its ack no longer counts.
    step(&mut l, Event::Connected { peer: 2, conn: 22 });
    assert!(
        step(&mut l, Event::Durable { zxid: z1 }).iter().all(|c| !matches!(c, Command::Commit(_))),
        "committed on the leader's own ack and a stale one"
    );
}

// With an election clock (election_tick_ms > 0, as ensemble members run), the election counts
// ElectionTicks, not ticks: finalizeWait is 200 ms however long tickTime is.
#[test]
fn election_counts_its_own_ticks() {
    let mut c = cfg();
    c.election_tick_ms = 100;
    c.finalize_wait = 2;
    let st = state(1, 1, Zxid::ZERO, &[z(1, 1)]);
    let last = st.history.last();
    let (mut p, _) = Peer::new(c, 1, st);
    step(&mut p, Event::Notification { from: 2, n: vote(ServerState::Looking, 1, last, 1, 1) });
    // A quorum agrees on 1; tickTime ticks do not end the finalize wait.
    for _ in 0..5 {
        assert!(step(&mut p, Event::Tick).is_empty(), "a tick does not drive the election");
    }
    assert!(step(&mut p, Event::ElectionTick).is_empty(), "one of two election ticks");
    assert_eq!(
        step(&mut p, Event::ElectionTick),
        vec![Command::RoleChanged(Role::Leading { epoch: None, established: false })]
    );
}

// A learner whose leader closes the connection before LEADERINFO (it had not finished its own
// election, so it refused the learner) retries at the next election tick instead of giving up
// on the leader; a refused connection is retried the same way. Without an election clock the
// ticks retry, as before.
#[test]
fn learner_retries_a_leader_not_leading_yet() {
    let mut c = cfg();
    c.election_tick_ms = 100;
    let mut p = elected_learner_with(c, 2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 1), 1);
    let cmds = step(&mut p, Event::Connected { peer: 1, conn: 7 });
    assert!(matches!(&cmds[..], [Command::Send { to: 1, .. }]), "FOLLOWERINFO: {cmds:?}");
    // The would-be leader closes it: no LOOKING, a retry on the next election tick.
    assert!(step(&mut p, Event::Disconnected { peer: 1, conn: Some(7) }).is_empty());
    assert!(matches!(p.role(), Role::Following { leader: 1, serving: false }));
    assert_eq!(step(&mut p, Event::ElectionTick), vec![Command::Connect { to: 1 }]);
    assert!(step(&mut p, Event::ElectionTick).is_empty(), "one attempt at a time");
    // Refused: retried again.
    assert!(step(&mut p, Event::Disconnected { peer: 1, conn: None }).is_empty());
    assert_eq!(step(&mut p, Event::ElectionTick), vec![Command::Connect { to: 1 }]);
    // The session ticks do not dial as well (two attempts would race; found by a slow CI
    // machine, where the second connection made the learner give up its leader).
    assert!(step(&mut p, Event::Tick).is_empty(), "only the election clock retries");
    // Connected for real: FOLLOWERINFO again, then LEADERINFO is answered.
    let cmds = step(&mut p, Event::Connected { peer: 1, conn: 8 });
    assert!(matches!(&cmds[..], [Command::Send { to: 1, .. }]), "{cmds:?}");
    // Another attempt that came up late, before LEADERINFO: that one is closed, ours stays.
    assert_eq!(
        step(&mut p, Event::Connected { peer: 1, conn: 9 }),
        vec![Command::Disconnect { peer: 1, conn: Some(9) }]
    );
    assert!(matches!(p.role(), Role::Following { leader: 1, serving: false }));
    // Past initLimit while still connecting: LOOKING.
    step(&mut p, Event::Disconnected { peer: 1, conn: Some(8) });
    for _ in 0..=cfg().init_limit {
        step(&mut p, Event::Tick);
    }
    step(&mut p, Event::ElectionTick);
    assert_eq!(p.role(), Role::Looking, "gives up after initLimit");
}

// A learner whose elected leader keeps refusing (the election raced: that peer went on to
// follow another) goes back to an election after 5 attempts, as ZooKeeper's learner does,
// not after initLimit ticks (found by kazoo's suite on a mixed ensemble: a Corral follower
// of a ZooKeeper server that was not leading stayed unavailable for seconds).
#[test]
fn learner_elects_again_after_five_refused_attempts() {
    let mut c = cfg();
    c.election_tick_ms = 100;
    let mut p = elected_learner_with(c, 2, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 1), 1);
    for attempt in 2..=5 {
        assert!(step(&mut p, Event::Disconnected { peer: 1, conn: None }).is_empty());
        assert_eq!(
            step(&mut p, Event::ElectionTick),
            vec![Command::Connect { to: 1 }],
            "attempt {attempt}"
        );
        assert!(matches!(p.role(), Role::Following { leader: 1, serving: false }));
    }
    assert!(step(&mut p, Event::Disconnected { peer: 1, conn: None }).is_empty());
    step(&mut p, Event::ElectionTick);
    assert_eq!(p.role(), Role::Looking, "the fifth refusal ends it, well within initLimit");
}

// The leader knows which server owns each session (ZooKeeper's session owner): the first to
// send a request for it, or the one that revalidated it last. A request from any other server
// becomes a SESSIONMOVED error txn; closing is not checked.
#[test]
fn requests_from_a_session_s_old_server_are_session_moved() {
    let mut l = established_leader();
    let write = |cxid| ForwardedRequest {
        session_id: 0x55,
        cxid,
        op: 1,
        body: Bytes::from_static(b"create"),
        auth: Vec::new(),
    };
    step(&mut l, Event::SessionCreated { session_id: 0x55, timeout: 30_000 });
    let cmds = recv(&mut l, 2, pktd(PacketType::Request, -1, write(1).encode()));
    assert_eq!(cmds, vec![Command::Request { from: 2, request: write(1) }], "2 owns it now");
    assert!(!l.claim_session(0x55), "the leader's own client may not use it");
    // The session moves to the leader (its client reconnected there): REVALIDATE.
    assert_eq!(
        step(&mut l, Event::Revalidate { session_id: 0x55, timeout: 30_000 }),
        vec![Command::Revalidated { session_id: 0x55, valid: true }]
    );
    assert!(l.claim_session(0x55), "the leader owns it now");
    let cmds = recv(&mut l, 2, pktd(PacketType::Request, -1, write(2).encode()));
    assert_eq!(
        cmds,
        vec![Command::SessionMoved { from: 2, request: write(2) }],
        "2's request: moved"
    );
    let close = ForwardedRequest { op: -11, ..write(3) };
    let cmds = recv(&mut l, 2, pktd(PacketType::Request, -1, close.encode()));
    assert_eq!(cmds, vec![Command::Request { from: 2, request: close }], "closing is not checked");
    // A global session nobody owns is claimed by the first server to ask.
    step(&mut l, Event::SessionCreated { session_id: 0x66, timeout: 30_000 });
    assert!(l.claim_session(0x66));
    let req = ForwardedRequest { session_id: 0x66, ..write(4) };
    let cmds = recv(&mut l, 2, pktd(PacketType::Request, -1, req.encode()));
    assert_eq!(cmds, vec![Command::SessionMoved { from: 2, request: req }]);
    // A session the tracker does not know (a learner's local session) has no owner.
    let local = ForwardedRequest { session_id: 0x77, ..write(5) };
    let cmds = recv(&mut l, 2, pktd(PacketType::Request, -1, local.encode()));
    assert_eq!(cmds, vec![Command::Request { from: 2, request: local }]);
    assert!(l.claim_session(0x77), "and no owner was recorded for it");
}

// A follower that logged txns in the last epoch which the leader has too (the leader's sync
// point is its last one) gets an empty DIFF: no PROPOSAL, no COMMIT. At UPTODATE it must still
// commit everything up to the sync point, or a sync answered there would miss writes the
// leader acknowledged.
#[test]
fn empty_diff_commits_up_to_the_sync_point_at_uptodate() {
    let mut p = elected_learner(2, state(1, 1, Zxid::ZERO, &[z(1, 1), z(1, 2)]), z(1, 2), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    let mut cmds = recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    cmds.extend(recv(&mut p, 1, pkt(PacketType::Diff, z(1, 2))));
    cmds.extend(recv(&mut p, 1, pkt(PacketType::NewLeader, z(2, 0))));
    cmds.extend(step(&mut p, Event::Durable { zxid: z(1, 2) }));
    cmds.extend(recv(&mut p, 1, pkt(PacketType::UpToDate, Zxid(u64::MAX))));
    assert!(p.is_serving());
    let committed =
        cmds.iter().filter_map(|c| if let Command::Commit(z) = c { Some(*z) } else { None }).max();
    assert_eq!(committed, Some(z(1, 2)), "commits the sync point: {cmds:?}");
}

// A LOOKING peer told a worse vote in its own round answers with its own: the sender has not
// heard it (a lost notification), and would otherwise wait for it while this peer, hearing
// from it, never re-sends (the simulator found two peers stuck so).
#[test]
fn a_worse_vote_in_the_same_round_is_answered() {
    let (mut p, first) = Peer::new(cfg(), 3, state(1, 1, Zxid::ZERO, &[z(1, 1), z(1, 2)]));
    let mine = match &first[0] {
        Command::SendNotification { n, .. } => n.clone(),
        c => panic!("{c:?}"),
    };
    let worse = vote(ServerState::Looking, 1, z(1, 1), mine.election_epoch, 1);
    let cmds = step(&mut p, Event::Notification { from: 1, n: worse });
    assert_eq!(cmds, vec![Command::SendNotification { to: 1, n: mine.clone() }]);
    // The same vote as ours needs no answer.
    let same = vote(ServerState::Looking, 3, z(1, 2), mine.election_epoch, 1);
    assert!(step(&mut p, Event::Notification { from: 2, n: same }).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Dynamic reconfiguration

/// A membership text: voters and observers on loopback ports, then the version.
fn members(voters: &[Sid], observers: &[Sid], version: u64) -> String {
    let mut ids: Vec<(Sid, &str)> = voters.iter().map(|v| (*v, "participant")).collect();
    ids.extend(observers.iter().map(|o| (*o, "observer")));
    ids.sort();
    let mut t = String::new();
    for (id, kind) in ids {
        t.push_str(&format!("server.{id}=127.0.0.1:{}:{}:{kind}\n", 2000 + id, 3000 + id));
    }
    t + &format!("version={version:x}")
}

/// A reconfig txn (type 16, a SetDataTxn of /zookeeper/config) carrying `text`.
fn reconfig_txn(zxid: Zxid, text: &str) -> Bytes {
    use corral_server::proto::{Jute, SetDataTxn, Txn, TxnHeader};
    let hdr = TxnHeader { client_id: 9, cxid: 1, zxid: zxid.to_wire(), time: 0, op: 16 };
    let txn = Txn::Reconfig(SetDataTxn {
        path: "/zookeeper/config".into(),
        data: text.as_bytes().to_vec().into(),
        version: -1,
    });
    let mut b = Vec::new();
    hdr.write(&mut b);
    txn.write(&mut b);
    Bytes::from(b)
}

fn reconfig_cfg() -> PeerConfig {
    let mut c = cfg();
    c.reconfig_enabled = true;
    c.config_text = Bytes::from(members(&[1, 2, 3], &[4], 0));
    c
}

fn activated(cmds: &[Command]) -> Vec<u64> {
    cmds.iter()
        .filter_map(
            |c| if let Command::Activate { version, .. } = c { Some(*version) } else { None },
        )
        .collect()
}

/// Leader 1 of epoch 2 with followers 2 and 3 synced, reconfig enabled.
fn reconfig_leader() -> Peer {
    let mut p = elected_leader_with(reconfig_cfg(), state(1, 1, Zxid::ZERO, &[z(1, 1)]));
    step(&mut p, Event::Connected { peer: 2, conn: 2 });
    recv(&mut p, 2, follower_info(2, 1));
    let cmds = recv(&mut p, 2, ack_epoch(z(1, 1), 1));
    // ZOOKEEPER-1783: the initial membership (version 0) gets the new epoch's version, sent
    // with NEWLEADER and active once the leader is established.
    let epoch_text = members(&[1, 2, 3], &[4], z(2, 0).get());
    assert!(
        cmds.contains(&send(
            2,
            pktd(PacketType::NewLeader, z(2, 0).to_wire(), Bytes::from(epoch_text.clone()))
        )),
        "{cmds:?}"
    );
    let cmds = recv(&mut p, 2, pkt(PacketType::Ack, z(2, 0)));
    assert!(cmds.contains(&Command::Established { epoch: 2 }));
    assert_eq!(activated(&cmds), vec![z(2, 0).get()]);
    assert_eq!(p.config().config_text, Bytes::from(epoch_text));
    step(&mut p, Event::Connected { peer: 3, conn: 3 });
    recv(&mut p, 3, follower_info(3, 1));
    recv(&mut p, 3, ack_epoch(z(1, 1), 1));
    recv(&mut p, 3, pkt(PacketType::Ack, z(2, 0)));
    assert!(p.is_quorum_synced(&[1, 2, 3].into()));
    p
}

// Leader.processAck with two quorum verifiers: from a reconfig txn on, a proposal commits only
// with a quorum of the old voters and one of the new; the reconfig goes out as
// COMMITANDACTIVATE naming the leader, and its membership becomes the active one.
#[test]
fn a_reconfig_commits_with_both_quorums_and_activates() {
    let mut p = reconfig_leader();
    assert!(!p.reconfig_in_progress());
    let z1 = z(2, 1);
    let next = members(&[1, 3], &[4], z1.get());
    let t1 = reconfig_txn(z1, &next);
    step(&mut p, Event::Propose { zxid: z1, data: t1.clone() });
    assert!(p.reconfig_in_progress(), "one reconfig at a time");
    let z2 = z(2, 2);
    step(&mut p, Event::Propose { zxid: z2, data: data(z2) });
    step(&mut p, Event::Durable { zxid: z2 });
    // 1 and 2: a quorum of {1,2,3}, not of {1,3}.
    assert!(recv(&mut p, 2, pkt(PacketType::Ack, z1)).is_empty());
    assert!(recv(&mut p, 2, pkt(PacketType::Ack, z2)).is_empty());
    let cmds = recv(&mut p, 3, pkt(PacketType::Ack, z1));
    let leader_1 = Bytes::copy_from_slice(&1i64.to_be_bytes());
    assert_eq!(
        cmds,
        vec![
            send(2, pktd(PacketType::CommitAndActivate, z1.to_wire(), leader_1.clone())),
            send(3, pktd(PacketType::CommitAndActivate, z1.to_wire(), leader_1)),
            Command::Commit(z1),
            Command::Activate { text: Bytes::from(next.clone()), version: z1.get() },
        ]
    );
    assert!(!p.reconfig_in_progress());
    assert_eq!(p.config().voters, [1, 3].into());
    assert!(matches!(p.role(), Role::Leading { established: true, .. }), "still the leader");
    // 2.2 now needs a quorum of {1,3} only: 3's ack commits it, 2's is not counted.
    let cmds = recv(&mut p, 3, pkt(PacketType::Ack, z2));
    assert!(cmds.contains(&Command::Commit(z2)), "{cmds:?}");
    // The leader refuses a learner whose activated membership is later than its own.
    step(&mut p, Event::Connected { peer: 4, conn: 4 });
    let li =
        LearnerInfo { server_id: 4, protocol_version: PROTOCOL_VERSION, config_version: i64::MAX };
    let cmds = recv(&mut p, 4, pktd(PacketType::ObserverInfo, z(1, 0).to_wire(), li.encode()));
    assert_eq!(cmds, vec![Command::Disconnect { peer: 4, conn: Some(4) }]);
}

// A learner syncing while a reconfig is outstanding gets the active membership with NEWLEADER
// (it activates that one at UPTODATE), and the reconfig txn among the outstanding proposals.
#[test]
fn newleader_of_an_established_leader_carries_the_active_membership() {
    let mut p = reconfig_leader();
    let active = p.config().config_text.clone();
    let z1 = z(2, 1);
    let t1 = reconfig_txn(z1, &members(&[1, 3], &[4], z1.get()));
    step(&mut p, Event::Propose { zxid: z1, data: t1.clone() });
    step(&mut p, Event::Disconnected { peer: 2, conn: Some(2) });
    step(&mut p, Event::Connected { peer: 2, conn: 5 });
    recv_on(&mut p, 2, 5, follower_info(2, 2));
    let cmds = recv_on(&mut p, 2, 5, ack_epoch(z(1, 1), 2));
    assert!(cmds.contains(&send(2, pktd(PacketType::Proposal, z1.to_wire(), t1))), "{cmds:?}");
    assert!(
        cmds.contains(&send(2, pktd(PacketType::NewLeader, z(2, 0).to_wire(), active))),
        "{cmds:?}"
    );
}

// A leader completes the newest reconfig of its history even when it is older than the
// history window: the replica finds it in the recovered state (the simulator found a leader
// that lost track of it and refused every learner that had activated it).
#[test]
fn a_leader_completes_a_reconfig_older_than_its_window() {
    let text = members(&[1, 2, 3, 4], &[], z(1, 1).get());
    let mut st = state(1, 1, Zxid::ZERO, &[z(1, 2), z(1, 3)]);
    st.logged_config = Some((z(1, 1), Bytes::from(text.clone())));
    let mut p = elected_leader_with(reconfig_cfg(), st);
    step(&mut p, Event::Connected { peer: 2, conn: 2 });
    recv(&mut p, 2, follower_info(2, 1));
    // The epoch's quorum is of both memberships too: {1, 2} of {1, 2, 3} is not 3 of
    // {1, 2, 3, 4}, so nobody is synced yet; observer 4's ACKEPOCH counts where it votes.
    let cmds = recv(&mut p, 2, ack_epoch(z(1, 3), 1));
    assert!(!cmds.iter().any(|c| matches!(c, Command::PersistCurrentEpoch(_))), "{cmds:?}");
    step(&mut p, Event::Connected { peer: 4, conn: 4 });
    recv(&mut p, 4, observer_info(4, 1));
    let cmds = recv(&mut p, 4, ack_epoch(z(1, 3), 1));
    assert!(cmds.contains(&Command::PersistCurrentEpoch(2)), "{cmds:?}");
    let newleader = pktd(PacketType::NewLeader, z(2, 0).to_wire(), Bytes::from(text.clone()));
    assert!(cmds.contains(&send(2, newleader.clone())), "{cmds:?}");
    assert!(cmds.contains(&send(4, newleader)), "{cmds:?}");
    // NEWLEADER's quorum too: 2's ack alone is not 3 of {1, 2, 3, 4}.
    assert!(!recv(&mut p, 2, pkt(PacketType::Ack, z(2, 0)))
        .contains(&Command::Established { epoch: 2 }));
    let cmds = recv(&mut p, 4, pkt(PacketType::Ack, z(2, 0)));
    assert!(cmds.contains(&Command::Established { epoch: 2 }), "{cmds:?}");
    assert_eq!(activated(&cmds), vec![z(1, 1).get()], "an observer's ack counts where it votes");
}

// Leader.getDesignatedLeader and allowedToCommit: a reconfig that leaves the leader out of
// the voters names a new voter that acked it; the old leader commits nothing more and, at
// its next tick, follows (here: observes) the designated leader without an election.
#[test]
fn a_leader_left_out_hands_over_to_the_designated_one() {
    let mut p = reconfig_leader();
    let z1 = z(2, 1);
    let next = members(&[2, 3], &[1, 4], z1.get());
    step(&mut p, Event::Propose { zxid: z1, data: reconfig_txn(z1, &next) });
    step(&mut p, Event::Durable { zxid: z1 });
    recv(&mut p, 3, pkt(PacketType::Ack, z1));
    assert!(!recv(&mut p, 2, pkt(PacketType::Ack, z1)).is_empty(), "committed");
    assert_eq!(p.next_zxid(), None, "no more proposals here");
    // It waits for its followers to leave it (closing first could lose the
    // COMMITANDACTIVATE on the way).
    assert!(!step(&mut p, Event::Tick).iter().any(|c| matches!(c, Command::RoleChanged(_))));
    step(&mut p, Event::Disconnected { peer: 2, conn: Some(2) });
    step(&mut p, Event::Disconnected { peer: 3, conn: Some(3) });
    let cmds = step(&mut p, Event::Tick);
    assert_joins(&cmds, Role::Observing { leader: 2, serving: false }, 2);
}

/// COMMITANDACTIVATE of `zxid` naming `leader`.
fn commit_and_activate(zxid: Zxid, leader: i64) -> QuorumPacket {
    pktd(
        PacketType::CommitAndActivate,
        zxid.to_wire(),
        Bytes::copy_from_slice(&leader.to_be_bytes()),
    )
}

/// The commands switch the peer to `role` and dial `leader`.
fn assert_joins(cmds: &[Command], role: Role, leader: Sid) {
    assert!(cmds.contains(&Command::RoleChanged(role)), "{cmds:?}");
    assert!(cmds.contains(&Command::Connect { to: leader }), "{cmds:?}");
}

#[test]
fn the_designated_leader_is_an_acker_of_the_reconfig() {
    let mut p = reconfig_leader();
    let z1 = z(2, 1);
    step(
        &mut p,
        Event::Propose { zxid: z1, data: reconfig_txn(z1, &members(&[2, 3], &[4], z1.get())) },
    );
    step(&mut p, Event::Durable { zxid: z1 });
    recv(&mut p, 3, pkt(PacketType::Ack, z1));
    let cmds = recv(&mut p, 2, pkt(PacketType::Ack, z1));
    // 3 acked first but 2 acked too: both are candidates; the lowest id is named.
    let leader_2 = Bytes::copy_from_slice(&2i64.to_be_bytes());
    assert!(
        cmds.contains(&send(3, pktd(PacketType::CommitAndActivate, z1.to_wire(), leader_2))),
        "{cmds:?}"
    );
    // Left out entirely, the old leader looks for a leader once its followers have left, or
    // (here: they stay) after syncLimit ticks.
    let mut cmds = Vec::new();
    for _ in 0..=5 {
        assert!(!cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");
        cmds = step(&mut p, Event::Tick);
    }
    assert!(cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");
}

/// Follower 2 (reconfig enabled) synced with leader 1 in epoch 2 and up to date.
fn reconfig_follower(id: Sid) -> Peer {
    let mut p =
        elected_learner_with(reconfig_cfg(), id, state(1, 1, Zxid::ZERO, &[z(1, 1)]), z(1, 1), 1);
    step(&mut p, Event::Connected { peer: 1, conn: 1 });
    recv(
        &mut p,
        1,
        pktd(PacketType::LeaderInfo, (z(2, 0)).to_wire(), encode_i32(PROTOCOL_VERSION)),
    );
    recv(&mut p, 1, pkt(PacketType::Diff, z(1, 1)));
    let text = members(&[1, 2, 3], &[4], z(2, 0).get());
    recv(&mut p, 1, pktd(PacketType::NewLeader, z(2, 0).to_wire(), Bytes::from(text.clone())));
    // NEWLEADER's membership is activated at UPTODATE.
    let cmds = recv(&mut p, 1, pkt(PacketType::UpToDate, Zxid(u64::MAX)));
    assert_eq!(activated(&cmds), vec![z(2, 0).get()], "{cmds:?}");
    assert!(p.is_serving());
    p
}

// Follower COMMITANDACTIVATE: the reconfig txn (received as a PROPOSAL) commits and its
// membership is activated; the same leader stays; a different designated leader is followed
// at once.
#[test]
fn a_follower_activates_and_follows_the_designated_leader() {
    for designated in [1i64, 3] {
        let mut f = reconfig_follower(2);
        let z1 = z(2, 1);
        let next = members(&[1, 2, 3], &[], z1.get());
        recv(&mut f, 1, pktd(PacketType::Proposal, z1.to_wire(), reconfig_txn(z1, &next)));
        step(&mut f, Event::Durable { zxid: z1 });
        let cmds = recv(&mut f, 1, commit_and_activate(z1, designated));
        assert_eq!(cmds[0], Command::Commit(z1));
        assert_eq!(cmds[1], Command::Activate { text: Bytes::from(next), version: z1.get() });
        assert_eq!(f.config().observers.len(), 0);
        if designated == 1 {
            assert!(f.is_serving(), "{cmds:?}");
        } else {
            assert_joins(&cmds, Role::Following { leader: 3, serving: false }, 3);
        }
    }
}

// A reconfig txn arriving while an older one is still logged and not active here (its
// COMMITANDACTIVATE not received): the older one committed — a leader proposes a reconfig only
// once the one before is active — so it is activated at once. Otherwise this follower, leading
// later, would hold only the newer one as pending and need no quorum of the membership that
// committed txns between the two.
#[test]
fn a_newer_reconfig_activates_the_older_one_still_pending() {
    let mut f = reconfig_follower(2);
    let (z1, z2) = (z(2, 1), z(2, 3));
    let older = members(&[1, 2, 3, 4], &[], z1.get());
    let newer = members(&[1, 2, 3], &[4], z2.get());
    let cmds = recv(&mut f, 1, pktd(PacketType::Proposal, z1.to_wire(), reconfig_txn(z1, &older)));
    assert!(activated(&cmds).is_empty(), "a proposal alone activates nothing");
    let data = pktd(PacketType::Proposal, z(2, 2).to_wire(), Bytes::from_static(b"txn"));
    assert!(activated(&recv(&mut f, 1, data)).is_empty());
    let cmds = recv(&mut f, 1, pktd(PacketType::Proposal, z2.to_wire(), reconfig_txn(z2, &newer)));
    assert_eq!(activated(&cmds), vec![z1.get()], "{cmds:?}");
    assert_eq!(f.config().voters, [1, 2, 3, 4].into());
}

// A follower made an observer by the reconfig reconnects to the leader as an observer.
#[test]
fn a_follower_made_observer_reconnects_as_one() {
    let mut f = reconfig_follower(2);
    let z1 = z(2, 1);
    let next = members(&[1, 3], &[2, 4], z1.get());
    recv(&mut f, 1, pktd(PacketType::Proposal, z1.to_wire(), reconfig_txn(z1, &next)));
    let cmds = recv(&mut f, 1, commit_and_activate(z1, 1));
    assert_joins(&cmds, Role::Observing { leader: 1, serving: false }, 1);
}

// Observer INFORMANDACTIVATE: the designated leader, then the txn itself.
#[test]
fn an_observer_activates_by_inform_and_activate() {
    let mut o = reconfig_follower(4);
    assert!(matches!(o.role(), Role::Observing { .. }));
    let z1 = z(2, 1);
    let next = members(&[1, 2, 3], &[4, 5], z1.get());
    let txn = reconfig_txn(z1, &next);
    let mut d = 1i64.to_be_bytes().to_vec();
    d.extend_from_slice(&txn);
    let cmds = recv(&mut o, 1, pktd(PacketType::InformAndActivate, z1.to_wire(), Bytes::from(d)));
    assert_eq!(
        cmds,
        vec![
            Command::AppendTxns(vec![(z1, txn)]),
            Command::Commit(z1),
            Command::Activate { text: Bytes::from(next), version: z1.get() },
        ]
    );
    assert!(o.is_serving());
    // A payload too short for a leader id is a protocol error.
    let cmds = recv(
        &mut o,
        1,
        pktd(PacketType::InformAndActivate, z(2, 2).to_wire(), Bytes::from_static(b"abc")),
    );
    assert!(cmds.contains(&Command::RoleChanged(Role::Looking)), "{cmds:?}");
}

// With reconfigEnabled off here, COMMITANDACTIVATE commits the txn and keeps the configured
// membership, as ZooKeeper does, and says so.
#[test]
fn commit_and_activate_without_reconfig_enabled_only_commits() {
    let mut f = active_follower();
    let z1 = z(2, 1);
    recv(
        &mut f,
        1,
        pktd(
            PacketType::Proposal,
            z1.to_wire(),
            reconfig_txn(z1, &members(&[1, 2], &[], z1.get())),
        ),
    );
    let cmds = recv(&mut f, 1, commit_and_activate(z1, 1));
    assert_eq!(cmds, vec![Command::Commit(z1), Command::ReconfigIgnored { zxid: z1, leader: 1 }]);
    assert!(f.is_serving());
    assert_eq!(f.config().voters, [1, 2, 3].into());
}

// FastLeaderElection's processReconfig: a LOOKING peer that hears of a newer membership takes
// it and starts its election over with it.
#[test]
fn a_looking_peer_adopts_a_newer_membership_from_a_notification() {
    let (mut p, _) = Peer::new(reconfig_cfg(), 2, state(1, 1, Zxid::ZERO, &[z(1, 1)]));
    let newer = members(&[1, 2, 3, 5], &[], z(3, 1).get());
    let mut n = vote(ServerState::Looking, 1, z(1, 1), 1, 1);
    n.config = Bytes::from(newer.clone());
    let cmds = step(&mut p, Event::Notification { from: 1, n });
    assert_eq!(activated(&cmds), vec![z(3, 1).get()]);
    assert_eq!(p.config().voters, [1, 2, 3, 5].into());
    assert!(
        cmds.contains(&Command::SendNotification { to: 5, n: p_vote_to(&cmds, 5) }),
        "notifies the new voter: {cmds:?}"
    );
    // An older one changes nothing.
    let mut n = vote(ServerState::Looking, 1, z(1, 1), 1, 1);
    n.config = Bytes::from(members(&[1, 2, 3], &[], 7));
    assert!(activated(&step(&mut p, Event::Notification { from: 1, n })).is_empty());
}

fn p_vote_to(cmds: &[Command], to: Sid) -> Notification {
    cmds.iter()
        .find_map(|c| match c {
            Command::SendNotification { to: t, n } if *t == to => Some(n.clone()),
            _ => None,
        })
        .expect("a notification")
}

/// A SNAP payload of the empty state at `zxid`, received as a learner's reader receives one.
fn received(zxid: Zxid) -> corral_server::db::ReceivedSnapshot {
    let mut body = Vec::new();
    corral_server::db::State::new(Default::default()).write_body(&mut body).unwrap();
    let mut payload = Vec::new();
    corral_server::zab::wire::write_snap_payload(&mut payload, &body);
    corral_server::db::SnapReceiver::read_whole(zxid, &payload, Default::default(), 1 << 20)
        .unwrap()
}
