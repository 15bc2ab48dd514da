//! Applying txns: the only way a tree changes. `apply` is a pure function of the tree and the
//! (header, txn) pair: the time and zxid come from the header, nothing else is consulted.
//!
//! It follows ZooKeeper's `DataTree.processTxn`, including its tolerance for replaying txns over
//! a fuzzy snapshot: a create whose node exists only raises the parent's cversion/pzxid, a
//! delete of a missing node still advances the parent's pzxid.

use crate::proto::{
    CloseSessionTxn, Create2Response, CreateResponse, ErrorCode, EventType, OpCode,
    OpResult as MultiResult, Response, Stat, StatPersisted, StatResponse, Txn, TxnHeader,
};

use super::path::{parent_of, split};
use super::quota::{self, StatsTrack};
use super::{DataTree, EphemeralType, Node, CONTAINER_EPHEMERAL_OWNER};

/// A watch event the txn causes. The watch manager fires it on its tables as ZooKeeper's
/// DataTree does: NodeCreated and NodeDataChanged on data/exist watches of `path`;
/// NodeDeleted on both data and child watches of `path`; NodeChildrenChanged on child watches
/// of `path` (the parent of a created or deleted node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTrigger {
    pub path: String,
    pub event: EventType,
}

/// The outcome of one txn (or one sub-txn of a multi), from which the server builds the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// The txn type (for a failed or rolled-back multi op: `Error`).
    pub op: OpCode,
    /// 0, or the error code. For a multi: the first non-zero sub-result code (the reply header
    /// of a multi still carries 0; the codes travel in the per-op results).
    pub err: i32,
    /// The node path (for creates: the actual path, with any sequence suffix).
    pub path: Option<String>,
    /// The node's Stat after the change (create2/createTTL/createContainer, setData, setACL).
    pub stat: Option<Stat>,
    /// Per-op results of a multi.
    pub multi: Vec<TxnResult>,
}

impl TxnResult {
    fn new(op: OpCode) -> Self {
        TxnResult { op, err: 0, path: None, stat: None, multi: Vec::new() }
    }

    /// True when the txn succeeded.
    pub fn is_ok(&self) -> bool {
        self.err == 0
    }

    /// The reply ZooKeeper's FinalRequestProcessor sends for this result: the ReplyHeader err
    /// and the body (empty for errors; a multi always has err 0 and carries per-op results).
    /// Reconfig's reply (the new config data) is the server's to build.
    pub fn reply(&self) -> (i32, Response) {
        if self.op == OpCode::Multi {
            return (0, Response::Multi(self.multi.iter().map(TxnResult::op_result).collect()));
        }
        if self.err != 0 {
            return (self.err, Response::Empty);
        }
        let path = self.path.clone().unwrap_or_default();
        let stat = self.stat.clone().unwrap_or_default();
        let body = match self.op {
            OpCode::Create => Response::Create(CreateResponse { path }),
            OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => {
                Response::Create2(Create2Response { path, stat })
            }
            OpCode::SetData | OpCode::SetAcl => Response::Stat(StatResponse { stat }),
            _ => Response::Empty,
        };
        (0, body)
    }

    fn op_result(&self) -> MultiResult {
        if self.err != 0 || self.op == OpCode::Error {
            return MultiResult::Error { err: self.err };
        }
        let path = self.path.clone().unwrap_or_default();
        let stat = self.stat.clone().unwrap_or_default();
        match self.op {
            OpCode::Create => MultiResult::Create { path },
            OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => {
                MultiResult::Create2 { path, stat }
            }
            OpCode::Delete | OpCode::DeleteContainer => MultiResult::Delete,
            OpCode::SetData => MultiResult::SetData { stat },
            _ => MultiResult::Check,
        }
    }
}

/// What applying a txn produced: the result for the reply and the watch triggers, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub result: TxnResult,
    pub triggers: Vec<WatchTrigger>,
}

type OpResult<T> = Result<T, ErrorCode>;

impl DataTree {
    /// Apply a txn. Never fails: errors are part of the result, as in ZooKeeper.
    pub fn apply(&mut self, hdr: &TxnHeader, txn: &Txn) -> ApplyOutcome {
        let mut triggers = Vec::new();
        let result = self.apply_one(hdr, txn, &mut triggers);
        if hdr.zxid > self.last_processed_zxid {
            self.last_processed_zxid = hdr.zxid;
        }
        ApplyOutcome { result, triggers }
    }

    fn apply_one(&mut self, hdr: &TxnHeader, txn: &Txn, trig: &mut Vec<WatchTrigger>) -> TxnResult {
        let mut rc = TxnResult::new(txn.opcode());
        rc.path = txn.path().map(str::to_owned);
        let zxid = hdr.zxid;
        let outcome: OpResult<()> = match txn {
            Txn::Create(t) | Txn::Create2(t) => {
                let owner = if t.ephemeral { hdr.client_id } else { 0 };
                let want_stat = matches!(txn, Txn::Create2(_));
                let r = self.create_node(
                    &t.path,
                    &t.data,
                    &t.acl,
                    owner,
                    t.parent_c_version,
                    hdr,
                    trig,
                );
                if let (Ok(stat), true) = (&r, want_stat) {
                    rc.stat = Some(stat.clone());
                }
                if r == Err(ErrorCode::NodeExists) && matches!(txn, Txn::Create(_)) {
                    // Replay over a fuzzy snapshot: the node was deleted and re-created by another
                    // session after its parent was serialised; bring the parent forward anyway.
                    self.set_cversion_pzxid(split(&t.path).0, t.parent_c_version, zxid);
                }
                r.map(|_| ())
            }
            Txn::CreateTtl(t) => {
                let owner = super::ttl_ephemeral_owner(t.ttl);
                self.create_node(&t.path, &t.data, &t.acl, owner, t.parent_c_version, hdr, trig)
                    .map(|stat| rc.stat = Some(stat))
            }
            Txn::CreateContainer(t) => self
                .create_node(
                    &t.path,
                    &t.data,
                    &t.acl,
                    CONTAINER_EPHEMERAL_OWNER,
                    t.parent_c_version,
                    hdr,
                    trig,
                )
                .map(|stat| rc.stat = Some(stat)),
            Txn::Delete(t) | Txn::DeleteContainer(t) => self.delete_node(&t.path, zxid, trig),
            Txn::SetData(t) | Txn::Reconfig(t) => self
                .set_data(&t.path, &t.data, t.version, zxid, hdr.time, trig)
                .map(|stat| rc.stat = Some(stat)),
            Txn::SetAcl(t) => {
                self.set_acl(&t.path, &t.acl, t.version).map(|stat| rc.stat = Some(stat))
            }
            Txn::CloseSession(t) => {
                self.kill_session(hdr.client_id, zxid, t, trig);
                Ok(())
            }
            Txn::Error(t) => {
                rc.err = t.err;
                Ok(())
            }
            Txn::CreateSession(_) | Txn::Check(_) => Ok(()),
            Txn::Multi(subs) => {
                rc.multi = self.apply_multi(hdr, subs, trig);
                rc.err = rc.multi.iter().map(|r| r.err).find(|e| *e != 0).unwrap_or(0);
                Ok(())
            }
        };
        if let Err(code) = outcome {
            rc.err = code.code();
        }
        rc
    }

    /// A multi whose sub-txns include an error is all-or-nothing: every sub-txn becomes an error
    /// result, 0 before the failing op (rolled back) and RUNTIMEINCONSISTENCY after it.
    fn apply_multi(
        &mut self,
        hdr: &TxnHeader,
        subs: &[Txn],
        trig: &mut Vec<WatchTrigger>,
    ) -> Vec<TxnResult> {
        let failed = subs.iter().any(|t| matches!(t, Txn::Error(_)));
        let mut post_failed = false;
        let mut results = Vec::with_capacity(subs.len());
        for sub in subs {
            let is_error = matches!(sub, Txn::Error(_));
            post_failed |= is_error;
            let sub_hdr = TxnHeader { op: sub.opcode().code(), ..hdr.clone() };
            let res = if failed && !is_error {
                let code =
                    if post_failed { ErrorCode::RuntimeInconsistency } else { ErrorCode::Ok };
                self.apply_one(&sub_hdr, &Txn::error(code), trig)
            } else {
                self.apply_one(&sub_hdr, sub, trig)
            };
            results.push(res);
        }
        results
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: &crate::proto::Data,
        acl: &[crate::proto::Acl],
        owner: i64,
        parent_c_version: i32,
        hdr: &TxnHeader,
        trig: &mut Vec<WatchTrigger>,
    ) -> OpResult<Stat> {
        let (parent, name) = split(path);
        if !path.starts_with('/') {
            return Err(ErrorCode::NoNode);
        }
        if self.exists(path) {
            // ZooKeeper points the existing node at the new list (without releasing the old one).
            let acl_id = self.acls.convert(acl);
            self.update_node(path, |n| n.set_acl(acl_id));
            return Err(ErrorCode::NodeExists);
        }
        let zxid = hdr.zxid;
        self.update_node(parent, |p| {
            let new_cversion =
                if parent_c_version == -1 { p.stat.cversion + 1 } else { parent_c_version };
            if new_cversion > p.stat.cversion {
                p.stat.cversion = new_cversion;
                p.stat.pzxid = zxid;
            }
            p.num_children += 1;
        })
        .ok_or(ErrorCode::NoNode)?;
        let acl_id = self.acls.convert(acl);
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: hdr.time,
            mtime: hdr.time,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
        };
        let node = Node::new(path, stat, data, acl_id);
        let mut client_stat = self.client_stat(&node);
        self.insert_node(node);

        if parent.starts_with(quota::QUOTA_ROOT)
            && (name == quota::LIMIT_NODE || name == quota::STAT_NODE)
        {
            let prefix = quota::trim_quota_path(parent);
            if !prefix.is_empty() {
                if name == quota::LIMIT_NODE {
                    self.quotas.insert(prefix.to_owned());
                } else {
                    self.update_quota_for_path(prefix);
                }
            }
        }
        if let Some(prefix) = self.max_quota_prefix(path).map(str::to_owned) {
            self.update_quota_stat(&prefix, data.len() as i64, 1);
        }
        if parent.starts_with(quota::QUOTA_ROOT) {
            // Quota bookkeeping may have rewritten the node itself (a stats node).
            client_stat = self.client_stat(self.node(path).ok_or(ErrorCode::SystemError)?);
        }
        trig.push(WatchTrigger { path: path.to_owned(), event: EventType::NodeCreated });
        trig.push(WatchTrigger {
            path: parent_of(path).to_owned(),
            event: EventType::NodeChildrenChanged,
        });
        Ok(client_stat)
    }

    fn delete_node(&mut self, path: &str, zxid: i64, trig: &mut Vec<WatchTrigger>) -> OpResult<()> {
        let (parent, name) = split(path);
        if !path.starts_with('/') {
            return Err(ErrorCode::NoNode);
        }
        let exists = path != "/" && self.exists(path);
        self.update_node(parent, |p| {
            if exists {
                p.num_children = p.num_children.saturating_sub(1);
            }
            if zxid > p.stat.pzxid {
                p.stat.pzxid = zxid;
            }
        })
        .ok_or(ErrorCode::NoNode)?;
        if !exists {
            return Err(ErrorCode::NoNode);
        }
        let node = self.remove_node(path).ok_or(ErrorCode::NoNode)?;
        self.acls.remove_usage(node.acl());
        if parent.starts_with(quota::QUOTA_ROOT) && name == quota::LIMIT_NODE {
            let prefix = quota::trim_quota_path(parent);
            if !prefix.is_empty() {
                self.quotas.remove(prefix);
            }
        }
        if let Some(prefix) = self.max_quota_prefix(path).map(str::to_owned) {
            self.update_quota_stat(&prefix, -(node.data_len() as i64), -1);
        }
        trig.push(WatchTrigger { path: path.to_owned(), event: EventType::NodeDeleted });
        trig.push(WatchTrigger {
            path: parent_of(path).to_owned(),
            event: EventType::NodeChildrenChanged,
        });
        Ok(())
    }

    fn set_data(
        &mut self,
        path: &str,
        data: &crate::proto::Data,
        version: i32,
        zxid: i64,
        time: i64,
        trig: &mut Vec<WatchTrigger>,
    ) -> OpResult<Stat> {
        let (old, new) = self
            .update_node(path, |n| {
                n.set_data(data);
                n.stat.mtime = time;
                n.stat.mzxid = zxid;
                n.stat.version = version;
            })
            .ok_or(ErrorCode::NoNode)?;
        trig.push(WatchTrigger { path: path.to_owned(), event: EventType::NodeDataChanged });
        if let Some(prefix) = self.max_quota_prefix(path).map(str::to_owned) {
            self.update_quota_stat(&prefix, data.len() as i64 - old.data_len() as i64, 0);
            // The bookkeeping may have rewritten the node itself (a stats node).
            let node = self.node(path).ok_or(ErrorCode::NoNode)?;
            return Ok(self.client_stat(node));
        }
        Ok(self.client_stat(&new))
    }

    fn set_acl(&mut self, path: &str, acl: &[crate::proto::Acl], version: i32) -> OpResult<Stat> {
        let old = self.node(path).ok_or(ErrorCode::NoNode)?.acl();
        self.acls.remove_usage(old);
        let id = self.acls.convert(acl);
        let (_, new) = self
            .update_node(path, |n| {
                n.stat.aversion = version;
                n.set_acl(id);
            })
            .ok_or(ErrorCode::NoNode)?;
        Ok(self.client_stat(&new))
    }

    fn set_cversion_pzxid(&mut self, path: &str, new_cversion: i32, zxid: i64) {
        let path = path.strip_suffix('/').unwrap_or(path);
        self.update_node(path, |n| {
            let v = if new_cversion == -1 { n.stat.cversion + 1 } else { new_cversion };
            if v > n.stat.cversion {
                n.stat.cversion = v;
                n.stat.pzxid = zxid;
            }
        });
    }

    /// Delete a closed session's ephemerals: the paths the txn names, then anything the index
    /// still holds for the session (a pre-3.6 txn names none).
    fn kill_session(
        &mut self,
        session: i64,
        zxid: i64,
        txn: &CloseSessionTxn,
        trig: &mut Vec<WatchTrigger>,
    ) {
        for path in txn.paths_to_delete.iter().flatten() {
            let _ = self.delete_node(path, zxid, trig);
        }
        let rest = self.ephemerals(session);
        for path in rest {
            let _ = self.delete_node(&path, zxid, trig);
        }
        self.ephemerals.remove(&session);
    }

    /// Add `bytes_diff` and `count_diff` to the stats node of a quota prefix.
    fn update_quota_stat(&mut self, prefix: &str, bytes_diff: i64, count_diff: i64) {
        let stat_path = quota::stat_path(prefix);
        let Some(node) = self.node(&stat_path) else { return };
        let Some(mut st) = StatsTrack::parse(node.data_bytes().unwrap_or_default()) else { return };
        st.set_count(st.count() + count_diff);
        st.set_bytes(st.bytes() + bytes_diff);
        let data = crate::proto::Data::from(st.to_bytes());
        self.update_node(&stat_path, |n| n.set_data(&data));
    }

    /// Recount a quota subtree (the prefix node and all its descendants) into its stats node.
    pub(super) fn update_quota_for_path(&mut self, prefix: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        if let Some(node) = self.node(prefix) {
            count += 1;
            bytes += node.data_len() as i64;
            let mut stack = vec![prefix.to_owned()];
            while let Some(p) = stack.pop() {
                for (child, n) in self.children(&p) {
                    count += 1;
                    bytes += n.data_len() as i64;
                    if n.num_children > 0 {
                        stack.push(child.to_owned());
                    }
                }
            }
        }
        let stat_path = quota::stat_path(prefix);
        if !self.exists(&stat_path) {
            return;
        }
        let mut st = StatsTrack::default();
        st.set_count(count);
        st.set_bytes(bytes);
        let data = crate::proto::Data::from(st.to_bytes());
        self.update_node(&stat_path, |n| n.set_data(&data));
    }

    /// The ephemeral type of a node (convenience for callers holding a node).
    pub fn node_ephemeral_type(&self, node: &Node) -> EphemeralType {
        self.ephemeral_type(node.stat.ephemeral_owner)
    }
}
