//! Preparing writes: turning a client write request into the deterministic txn that will be
//! logged and applied, or into the error the client gets (ZooKeeper's PrepRequestProcessor).
//!
//! Checks run in ZooKeeper's order, so the first failing one decides the error code (for
//! create: flags, TTL, path shape, ACL fix-up, parent lookup, parent CREATE permission,
//! sequence suffix and full path validation, existence, ephemeral parent, quota).
//!
//! The tree passed in is the server's speculative tree: the committed tree with every txn
//! prepared so far already applied. Requests therefore see the effects of earlier in-flight
//! writes simply because those were applied, which replaces ZooKeeper's outstanding-change
//! records. A multi is prepared against an O(1) clone of that tree, applying each op's txn to
//! the clone so later ops see earlier ones; the clone is dropped either way.

use crate::proto::{
    perms, CheckVersionTxn, CloseSessionTxn, CreateContainerTxn, CreateMode, CreateSessionTxn,
    CreateTtlTxn, CreateTxn, Data, DeleteTxn, ErrorCode, Id, MultiOp, Request, SetAclTxn,
    SetDataTxn, Txn, TxnHeader,
};

use super::acl::{check_acl, fixup_acl, AuthSchemes};
use super::path::{split, validate_path};
use super::quota::{self, StatsTrack};
use super::{DataTree, EphemeralType, Node, CONFIG_PATH, MAX_TTL, QUOTA_PATH, ZOOKEEPER_PATH};

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct SessionContext<'a> {
    pub session_id: i64,
    /// The connection's authenticated ids (ip, digest, super...).
    pub auth: &'a [Id],
    /// A local (not yet global) session that cannot own ephemerals.
    pub local_session: bool,
}

/// Server settings that change how writes are judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareConfig {
    /// `zookeeper.extendedTypesEnabled`: allow TTL nodes (UNIMPLEMENTED otherwise).
    pub extended_types: bool,
    /// `zookeeper.enforceQuota`: refuse writes past hard quota limits with QUOTAEXCEEDED.
    pub enforce_quota: bool,
    /// `skipACL`: no permission checks.
    pub skip_acl: bool,
    /// `closeSessionTxn.enabled` (default true): closeSession txns list the ephemerals.
    pub close_session_txn: bool,
    /// `reconfigEnabled`.
    pub reconfig_enabled: bool,
    /// Authentication schemes known besides ip and digest.
    pub auth_schemes: AuthSchemes,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            extended_types: false,
            enforce_quota: false,
            skip_acl: false,
            close_session_txn: true,
            reconfig_enabled: false,
            auth_schemes: AuthSchemes::default(),
        }
    }
}

type Prep<T> = Result<T, ErrorCode>;

struct Ctx<'a> {
    session: &'a SessionContext<'a>,
    cfg: &'a PrepareConfig,
}

impl Ctx<'_> {
    fn check(&self, tree: &DataTree, node: &Node, perm: i32) -> Prep<()> {
        if self.cfg.skip_acl
            || check_acl(&tree.acl_of(node), perm, self.session.auth, &self.cfg.auth_schemes)
        {
            Ok(())
        } else {
            Err(ErrorCode::NoAuth)
        }
    }

    fn fixup(&self, acl: &[crate::proto::Acl]) -> Prep<Vec<crate::proto::Acl>> {
        fixup_acl(acl, self.session.auth, &self.cfg.auth_schemes)
    }
}

/// Prepare a write request. `zxid` and `time` are the values the txn will carry. Reads (and
/// any request that is not a write) give UNIMPLEMENTED; reconfig gives RECONFIGDISABLED unless
/// enabled, and is otherwise left to the server (UNIMPLEMENTED here).
pub fn prepare(
    tree: &DataTree,
    session: &SessionContext<'_>,
    cfg: &PrepareConfig,
    req: &Request,
    zxid: i64,
    time: i64,
) -> Result<Txn, ErrorCode> {
    let ctx = Ctx { session, cfg };
    match req {
        Request::Create(r) => {
            prep_create(tree, &ctx, Kind::Create, &r.path, &r.data, &r.acl, r.flags, -1)
        }
        Request::Create2(r) => {
            prep_create(tree, &ctx, Kind::Create2, &r.path, &r.data, &r.acl, r.flags, -1)
        }
        Request::CreateContainer(r) => {
            prep_create(tree, &ctx, Kind::Container, &r.path, &r.data, &r.acl, r.flags, -1)
        }
        Request::CreateTtl(r) => {
            prep_create(tree, &ctx, Kind::Ttl, &r.path, &r.data, &r.acl, r.flags, r.ttl)
        }
        Request::Delete(r) => prep_delete(tree, &ctx, &r.path, r.version),
        Request::DeleteContainer(r) => prep_delete_container(tree, &r.path),
        Request::SetData(r) => prep_set_data(tree, &ctx, &r.path, &r.data, r.version),
        Request::SetAcl(r) => prep_set_acl(tree, &ctx, &r.path, &r.acl, r.version),
        Request::Multi(ops) => Ok(prep_multi(tree, &ctx, ops, zxid, time)),
        Request::CloseSession => Ok(prepare_close_session(tree, session.session_id, cfg)),
        Request::Reconfig(_) if !cfg.reconfig_enabled => Err(ErrorCode::ReconfigDisabled),
        _ => Err(ErrorCode::Unimplemented),
    }
}

/// Prepare a write and wrap the outcome as ZooKeeper logs it: a failed write is still a txn
/// (type error, with the code), consuming the zxid.
pub fn prepare_txn(
    tree: &DataTree,
    session: &SessionContext<'_>,
    cfg: &PrepareConfig,
    req: &Request,
    cxid: i32,
    zxid: i64,
    time: i64,
) -> (TxnHeader, Txn) {
    let txn = prepare(tree, session, cfg, req, zxid, time).unwrap_or_else(Txn::error);
    let header =
        TxnHeader { client_id: session.session_id, cxid, zxid, time, op: txn.opcode().code() };
    (header, txn)
}

/// The txn for a new session (opcode -10).
pub fn prepare_create_session(timeout_ms: i32) -> Txn {
    Txn::CreateSession(CreateSessionTxn { time_out: timeout_ms })
}

/// The closeSession txn: the session's ephemerals as the (speculative) tree has them.
pub fn prepare_close_session(tree: &DataTree, session_id: i64, cfg: &PrepareConfig) -> Txn {
    let paths = cfg.close_session_txn.then(|| tree.ephemerals(session_id));
    Txn::CloseSession(CloseSessionTxn { paths_to_delete: paths })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Create2,
    Container,
    Ttl,
}

/// The node for a path as ZooKeeper's `getRecordForPath` finds it ("" is the root).
fn record<'t>(tree: &'t DataTree, path: &str) -> Prep<&'t Node> {
    tree.node(path).ok_or(ErrorCode::NoNode)
}

fn check_version(current: i32, expected: i32) -> Prep<i32> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    // ZOOKEEPER-4743: never hand out -1, which clients cannot ask for explicitly.
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

fn bad_args<T>(_: T) -> ErrorCode {
    ErrorCode::BadArguments
}

#[allow(clippy::too_many_arguments)]
fn prep_create(
    tree: &DataTree,
    ctx: &Ctx<'_>,
    kind: Kind,
    path: &str,
    data: &Data,
    acl: &[crate::proto::Acl],
    flags: i32,
    ttl: i64,
) -> Prep<Txn> {
    let mode = CreateMode::from_code(flags).ok_or(ErrorCode::BadArguments)?;
    if mode.is_ttl() && !ctx.cfg.extended_types {
        return Err(ErrorCode::Unimplemented);
    }
    let ttl_ok = if mode.is_ttl() { ttl > 0 && ttl <= MAX_TTL } else { ttl < 0 };
    // ZooKeeper accepts createTTL with a non-TTL mode and a negative ttl here, then fails while
    // applying the txn; refuse it up front instead.
    if !ttl_ok || (kind == Kind::Ttl && !mode.is_ttl()) {
        return Err(ErrorCode::BadArguments);
    }
    if mode.is_ephemeral() && ctx.session.local_session {
        return Err(ErrorCode::EphemeralOnLocalSession);
    }
    if !path.contains('/') || path.contains('\0') {
        return Err(ErrorCode::BadArguments);
    }
    let parent_path = split(path).0;
    let acl = ctx.fixup(acl)?;
    let parent = record(tree, parent_path)?;
    ctx.check(tree, parent, perms::CREATE)?;
    let parent_cversion = parent.stat.cversion;
    let path =
        if mode.is_sequential() { format!("{path}{parent_cversion:010}") } else { path.to_owned() };
    validate_path(&path).map_err(bad_args)?;
    if tree.exists(&path) {
        return Err(ErrorCode::NodeExists);
    }
    if tree.ephemeral_type(parent.stat.ephemeral_owner) == EphemeralType::Normal {
        return Err(ErrorCode::NoChildrenForEphemerals);
    }
    let new_cversion = parent_cversion.wrapping_add(1);
    if quota::invalid_quota_write(&path, data.as_slice()) {
        return Err(ErrorCode::BadArguments);
    }
    check_quota(tree, ctx.cfg, &path, 1, data.len() as i64)?;
    let data = data.clone();
    Ok(match kind {
        Kind::Container => Txn::CreateContainer(CreateContainerTxn {
            path,
            data,
            acl,
            parent_c_version: new_cversion,
        }),
        Kind::Ttl => {
            Txn::CreateTtl(CreateTtlTxn { path, data, acl, parent_c_version: new_cversion, ttl })
        }
        Kind::Create | Kind::Create2 => {
            let txn = CreateTxn {
                path,
                data,
                acl,
                ephemeral: mode.is_ephemeral(),
                parent_c_version: new_cversion,
            };
            if kind == Kind::Create {
                Txn::Create(txn)
            } else {
                Txn::Create2(txn)
            }
        }
    })
}

fn is_special(path: &str) -> bool {
    matches!(path, "/" | ZOOKEEPER_PATH | QUOTA_PATH | CONFIG_PATH)
}

/// ZooKeeper's `getParentPathAndValidate` (delete does not run full path validation).
fn parent_for_delete(path: &str) -> Prep<&str> {
    if !path.contains('/') || path.contains('\0') || is_special(path) {
        return Err(ErrorCode::BadArguments);
    }
    Ok(split(path).0)
}

fn prep_delete(tree: &DataTree, ctx: &Ctx<'_>, path: &str, version: i32) -> Prep<Txn> {
    let parent = record(tree, parent_for_delete(path)?)?;
    ctx.check(tree, parent, perms::DELETE)?;
    let node = record(tree, path)?;
    check_version(node.stat.version, version)?;
    if node.num_children > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    Ok(Txn::Delete(DeleteTxn { path: path.to_owned() }))
}

fn prep_delete_container(tree: &DataTree, path: &str) -> Prep<Txn> {
    let parent_path = parent_for_delete(path)?;
    let node = record(tree, path)?;
    if node.num_children > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    if tree.ephemeral_type(node.stat.ephemeral_owner) == EphemeralType::Normal {
        return Err(ErrorCode::BadVersion);
    }
    record(tree, parent_path)?;
    Ok(Txn::DeleteContainer(DeleteTxn { path: path.to_owned() }))
}

fn prep_set_data(
    tree: &DataTree,
    ctx: &Ctx<'_>,
    path: &str,
    data: &Data,
    version: i32,
) -> Prep<Txn> {
    validate_path(path).map_err(bad_args)?;
    let node = record(tree, path)?;
    ctx.check(tree, node, perms::WRITE)?;
    if quota::invalid_quota_write(path, data.as_slice()) {
        return Err(ErrorCode::BadArguments);
    }
    check_quota(tree, ctx.cfg, path, 0, data.len() as i64 - node.data_len() as i64)?;
    let version = check_version(node.stat.version, version)?;
    Ok(Txn::SetData(SetDataTxn { path: path.to_owned(), data: data.clone(), version }))
}

fn prep_set_acl(
    tree: &DataTree,
    ctx: &Ctx<'_>,
    path: &str,
    acl: &[crate::proto::Acl],
    version: i32,
) -> Prep<Txn> {
    validate_path(path).map_err(bad_args)?;
    let acl = ctx.fixup(acl)?;
    let node = record(tree, path)?;
    ctx.check(tree, node, perms::ADMIN)?;
    let version = check_version(node.stat.aversion, version)?;
    Ok(Txn::SetAcl(SetAclTxn { path: path.to_owned(), acl, version }))
}

fn prep_check(tree: &DataTree, ctx: &Ctx<'_>, path: &str, version: i32) -> Prep<Txn> {
    validate_path(path).map_err(bad_args)?;
    let node = record(tree, path)?;
    ctx.check(tree, node, perms::READ)?;
    let version = check_version(node.stat.version, version)?;
    Ok(Txn::Check(CheckVersionTxn { path: path.to_owned(), version }))
}

fn prep_op(tree: &DataTree, ctx: &Ctx<'_>, op: &MultiOp) -> Prep<Txn> {
    match op {
        MultiOp::Create(r) => {
            prep_create(tree, ctx, Kind::Create, &r.path, &r.data, &r.acl, r.flags, -1)
        }
        MultiOp::Create2(r) => {
            prep_create(tree, ctx, Kind::Create2, &r.path, &r.data, &r.acl, r.flags, -1)
        }
        MultiOp::CreateContainer(r) => {
            prep_create(tree, ctx, Kind::Container, &r.path, &r.data, &r.acl, r.flags, -1)
        }
        MultiOp::CreateTtl(r) => {
            prep_create(tree, ctx, Kind::Ttl, &r.path, &r.data, &r.acl, r.flags, r.ttl)
        }
        MultiOp::Delete(r) => prep_delete(tree, ctx, &r.path, r.version),
        MultiOp::SetData(r) => prep_set_data(tree, ctx, &r.path, &r.data, r.version),
        MultiOp::Check(r) => prep_check(tree, ctx, &r.path, r.version),
        // Decoding keeps reads out of a multi; should one get here it fails like an unknown op.
        MultiOp::GetChildren(_) | MultiOp::GetData(_) => Err(ErrorCode::MarshallingError),
    }
}

/// All-or-nothing: ops before the first failure keep their txns, the failing op becomes an
/// error txn with its code, the rest error txns with RUNTIMEINCONSISTENCY.
fn prep_multi(tree: &DataTree, ctx: &Ctx<'_>, ops: &[MultiOp], zxid: i64, time: i64) -> Txn {
    let mut scratch = tree.clone();
    let mut failed = false;
    let mut txns = Vec::with_capacity(ops.len());
    for op in ops {
        if failed {
            txns.push(Txn::error(ErrorCode::RuntimeInconsistency));
            continue;
        }
        match prep_op(&scratch, ctx, op) {
            Ok(txn) => {
                let hdr = TxnHeader {
                    client_id: ctx.session.session_id,
                    cxid: 0,
                    zxid,
                    time,
                    op: txn.opcode().code(),
                };
                scratch.apply(&hdr, &txn);
                txns.push(txn);
            }
            Err(code) => {
                failed = true;
                txns.push(Txn::error(code));
            }
        }
    }
    Txn::Multi(txns)
}

/// ZooKeeper 3.7+'s `checkQuota`: with enforcement on, a write that would take a quota subtree
/// past a hard limit fails. Soft limits (the plain `count`/`bytes` fields) are only reported by
/// ZooKeeper's logs, never enforced. Reads the limits and stats nodes of the closest quota.
fn check_quota(
    tree: &DataTree,
    cfg: &PrepareConfig,
    path: &str,
    count_diff: i64,
    bytes_diff: i64,
) -> Prep<()> {
    if !cfg.enforce_quota {
        return Ok(());
    }
    let Some(prefix) = tree.max_quota_prefix(path) else { return Ok(()) };
    let Some(limits) = tree.node(&quota::limit_path(prefix)) else { return Ok(()) };
    let Some(limits) = StatsTrack::parse(limits.data_bytes().unwrap_or_default()) else {
        return Ok(());
    };
    let check_count = count_diff != 0 && (limits.count() > -1 || limits.count_hard_limit() > -1);
    let check_bytes = bytes_diff != 0 && (limits.bytes() > -1 || limits.byte_hard_limit() > -1);
    if !check_count && !check_bytes {
        return Ok(());
    }
    let Some(stats) = tree.node(&quota::stat_path(prefix)) else { return Ok(()) };
    let Some(stats) = StatsTrack::parse(stats.data_bytes().unwrap_or_default()) else {
        return Ok(());
    };
    if check_count
        && limits.count_hard_limit() > -1
        && stats.count() + count_diff > limits.count_hard_limit()
    {
        return Err(ErrorCode::QuotaExceeded);
    }
    if check_bytes
        && limits.byte_hard_limit() > -1
        && stats.bytes() + bytes_diff > limits.byte_hard_limit()
    {
        return Err(ErrorCode::QuotaExceeded);
    }
    Ok(())
}
