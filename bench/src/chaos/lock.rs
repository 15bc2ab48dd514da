//! The lock workload: a mutex as Curator's `InterProcessMutex` builds it, and its checker.
//!
//! Each lock client keeps one session and, until it loses it, takes the lock again and again:
//! create an EPHEMERAL_SEQUENTIAL node `/chaos/lock/lock-`; list `/chaos/lock` (a plain
//! getChildren, no `sync`, as Curator does); if its node has the lowest sequence number it holds
//! the lock, otherwise it sets a watch (`exists`) on the node just below its own, waits for the
//! event (or a second) and lists again. Holding, it pauses a little, then *confirms* the hold by
//! a setData on its own node — an answered setData proves the node (and so the session) was
//! still there — and releases by deleting the node.
//!
//! What is checked. An acquisition is a getChildren, invoked at `invoke` and answered at
//! `complete`, that showed the client's node lowest: at some moment within that window no
//! node with a lower number existed. A confirmed hold is a node that certainly existed from
//! its create's answer (`created`) until its confirming setData was sent (`confirm_invoke`).
//! Two sessions held the lock at once if an acquisition by node B falls wholly within the
//! confirmed hold of a node A numbered lower than B: B's list missed a node that certainly
//! existed. A hold whose confirmation failed (the session expired while its client believed
//! it held the lock — what fencing exists for) proves nothing and is only counted.
//! Besides: a node missing from a list answered on its own live session is an anomaly, and
//! every lock node is gone once its session has ended and expired (the session checker's
//! final sweep covers `/chaos/lock`).

use std::sync::Arc;
use std::time::Duration;

use corral_server::proto::{DeleteRequest, PathWatchRequest, Request, Response, SetDataRequest};
use rand::{Rng, SeedableRng};

use super::client::{Client, Outcome};
use super::workload::{EndedSession, Shared};
use crate::zk;

/// The lock's parent.
pub const LOCK_DIR: &str = "/chaos/lock";

/// NONODE.
const NO_NODE: i32 = -101;

/// A getChildren that showed the caller's node lowest.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Acquire {
    /// The session.
    pub session: i64,
    /// The caller's node's sequence number.
    pub seq: u64,
    /// When the getChildren was sent (ns since the run began).
    pub invoke: u64,
    /// When its answer arrived.
    pub complete: u64,
}

/// A hold confirmed by a setData on the holder's node.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Hold {
    /// The session.
    pub session: i64,
    /// The node's sequence number.
    pub seq: u64,
    /// When the node's create was answered.
    pub created: u64,
    /// When the confirming setData was sent.
    pub confirm_invoke: u64,
}

/// What the lock clients saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LockLog {
    /// Acquisitions.
    pub acquires: Vec<Acquire>,
    /// Confirmed holds.
    pub holds: Vec<Hold>,
    /// Holds whose confirmation was refused (the node or session was gone).
    pub lost: u64,
    /// Holds whose confirmation went unanswered.
    pub unconfirmed: u64,
    /// Watches on a predecessor that fired.
    pub watch_events: u64,
}

/// Two holders at once: every acquisition that falls wholly within the confirmed hold of a
/// lower-numbered node. Returns the anomalies.
pub fn check_locks(log: &LockLog) -> Vec<String> {
    let mut holds = log.holds.clone();
    holds.sort_by_key(|h| h.seq);
    let mut out = Vec::new();
    for a in &log.acquires {
        let lower = holds.partition_point(|h| h.seq < a.seq);
        if let Some(h) =
            holds[..lower].iter().find(|h| h.created <= a.invoke && a.complete <= h.confirm_invoke)
        {
            out.push(format!(
                "two lock holders: node lock-{:010} (session 0x{:x}) held the lock from {:.3} s \
                 to {:.3} s, yet node lock-{:010} (session 0x{:x}) saw itself lowest by a list \
                 sent at {:.3} s and answered at {:.3} s",
                h.seq,
                h.session,
                secs(h.created),
                secs(h.confirm_invoke),
                a.seq,
                a.session,
                secs(a.invoke),
                secs(a.complete)
            ));
            if out.len() >= 20 {
                break;
            }
        }
    }
    out
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A lock node's sequence number.
fn seq_of(name: &str) -> Option<u64> {
    name.rsplit('/').next()?.strip_prefix("lock-")?.parse().ok()
}

/// One lock client: sessions one after another, each taking the lock until a request goes
/// unanswered. Runs until the run stops.
pub async fn lock_worker(sh: Arc<Shared>, w: u32, seed: u64) {
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(53).wrapping_add(u64::from(w)));
    while sh.running() {
        let Some((mut c, node)) = super::workload::fresh_session(&sh, &mut rng).await else {
            continue;
        };
        let session = c.session_id;
        // The lock node this session may still have (created, or a create without an answer).
        let mut left: Option<String> = None;
        while sh.running() {
            match take_once(&sh, &mut c, node, &mut rng, &mut left).await {
                Step::Again => {}
                Step::Lost => break,
            }
        }
        let closed = left.is_none()
            && matches!(
                c.call(&Request::CloseSession, sh.op_timeout).await,
                Outcome::Answered(0, ..)
            );
        drop(c);
        sh.sessions.lock().expect("lock").ended.push(EndedSession {
            session,
            paths: left.into_iter().collect(),
            ended: sh.now(),
            closed,
        });
    }
}

enum Step {
    /// Go on with this session.
    Again,
    /// A request went unanswered: abandon the session.
    Lost,
}

/// Takes the lock once, holds it, confirms and releases it.
async fn take_once(
    sh: &Shared,
    c: &mut Client,
    server: usize,
    rng: &mut rand::rngs::StdRng,
    left: &mut Option<String>,
) -> Step {
    let session = c.session_id;
    *left = Some(format!("{LOCK_DIR}/lock-?"));
    let path = match c.call(&zk::create(format!("{LOCK_DIR}/lock-"), b"", 3), sh.op_timeout).await {
        Outcome::Answered(0, Some(Response::Create(r))) => r.path,
        Outcome::Answered(err, ..) => {
            sh.count_error(err);
            *left = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Step::Again;
        }
        Outcome::Unknown => return Step::Lost,
    };
    let created = sh.now();
    *left = Some(path.clone());
    let Some(seq) = seq_of(&path) else {
        sh.anomalies.lock().expect("lock").push(format!("lock create answered a bad name {path}"));
        return Step::Lost;
    };
    // Wait for the lock.
    loop {
        if !sh.running() {
            return Step::Lost;
        }
        let list = Request::GetChildren(PathWatchRequest { path: LOCK_DIR.into(), watch: false });
        let invoke = sh.now();
        let kids = match c.call(&list, sh.op_timeout).await {
            Outcome::Answered(0, Some(Response::GetChildren(k))) => k.children,
            Outcome::Answered(err, ..) => {
                sh.count_error(err);
                return Step::Lost;
            }
            Outcome::Unknown => return Step::Lost,
        };
        let complete = sh.now();
        let mut seqs: Vec<(u64, &str)> =
            kids.iter().filter_map(|k| seq_of(k).map(|s| (s, k.as_str()))).collect();
        seqs.sort_unstable();
        let Some(mine) = seqs.iter().position(|(s, _)| *s == seq) else {
            sh.anomalies.lock().expect("lock").push(format!(
                "lock node {path} of live session 0x{session:x} missing from the list server {} \
                 answered at {:.3} s",
                server + 1,
                secs(complete)
            ));
            return Step::Lost;
        };
        if mine == 0 {
            sh.locks.lock().expect("lock").acquires.push(Acquire {
                session,
                seq,
                invoke,
                complete,
            });
            break;
        }
        let pred = format!("{LOCK_DIR}/{}", seqs[mine - 1].1);
        let watch = Request::Exists(PathWatchRequest { path: pred, watch: true });
        match c.call(&watch, sh.op_timeout).await {
            Outcome::Answered(0, ..) => match c.wait_event(Duration::from_secs(1)).await {
                Ok(true) => sh.locks.lock().expect("lock").watch_events += 1,
                Ok(false) => {}
                Err(_) => return Step::Lost,
            },
            Outcome::Answered(NO_NODE, ..) => {}
            Outcome::Answered(err, ..) => {
                sh.count_error(err);
                return Step::Lost;
            }
            Outcome::Unknown => return Step::Lost,
        }
    }
    // Hold, confirm, release.
    tokio::time::sleep(Duration::from_millis(rng.random_range(20..300))).await;
    let confirm_invoke = sh.now();
    let confirm = Request::SetData(SetDataRequest {
        path: path.clone(),
        data: b"held".to_vec().into(),
        version: -1,
    });
    match c.call(&confirm, sh.op_timeout).await {
        Outcome::Answered(0, ..) => sh.locks.lock().expect("lock").holds.push(Hold {
            session,
            seq,
            created,
            confirm_invoke,
        }),
        Outcome::Answered(err, ..) => {
            sh.count_error(err);
            sh.locks.lock().expect("lock").lost += 1;
            return Step::Lost;
        }
        Outcome::Unknown => {
            sh.locks.lock().expect("lock").unconfirmed += 1;
            return Step::Lost;
        }
    }
    match c.call(&Request::Delete(DeleteRequest { path, version: -1 }), sh.op_timeout).await {
        Outcome::Answered(0, ..) => {
            *left = None;
            Step::Again
        }
        Outcome::Answered(err, ..) => {
            sh.count_error(err);
            Step::Lost
        }
        Outcome::Unknown => Step::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(seq: u64, created: u64, confirm_invoke: u64) -> Hold {
        Hold { session: seq as i64, seq, created, confirm_invoke }
    }

    fn acquire(seq: u64, invoke: u64, complete: u64) -> Acquire {
        Acquire { session: seq as i64, seq, invoke, complete }
    }

    #[test]
    fn the_lock_check_rejects_two_holders_and_only_them() {
        // A (1) holds from 10 to 50; B (2) lists from 60 to 70: one after the other.
        let ok = LockLog {
            acquires: vec![acquire(1, 12, 15), acquire(2, 60, 70)],
            holds: vec![hold(1, 10, 50), hold(2, 5, 90)],
            ..Default::default()
        };
        assert!(check_locks(&ok).is_empty());
        // B's list within A's confirmed hold, B numbered higher: two holders.
        let two = LockLog { acquires: vec![acquire(1, 12, 15), acquire(2, 20, 30)], ..ok.clone() };
        let found = check_locks(&two);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("lock-0000000001") && found[0].contains("lock-0000000002"));
        // A list that overlaps the hold's ends may have been served before or after it.
        let edge = LockLog { acquires: vec![acquire(2, 45, 55), acquire(2, 5, 12)], ..ok.clone() };
        assert!(check_locks(&edge).is_empty());
        // An unconfirmed hold proves nothing.
        let unconfirmed = LockLog {
            acquires: vec![acquire(2, 20, 30)],
            holds: vec![hold(2, 5, 90)],
            lost: 1,
            ..Default::default()
        };
        assert!(check_locks(&unconfirmed).is_empty());
        // Only a list by a higher number inside a lower number's hold counts.
        let lower = LockLog {
            acquires: vec![acquire(1, 20, 30)],
            holds: vec![hold(2, 5, 90)],
            ..Default::default()
        };
        assert!(check_locks(&lower).is_empty());
    }

    #[test]
    fn sequence_numbers_are_read_from_names_and_paths() {
        assert_eq!(seq_of("lock-0000000042"), Some(42));
        assert_eq!(seq_of("/chaos/lock/lock-0000000007"), Some(7));
        assert_eq!(seq_of("other"), None);
    }
}
