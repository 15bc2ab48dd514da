//! Answering requests that do not change the tree: reads, watch registration, sync, ping,
//! whoAmI — ZooKeeper's FinalRequestProcessor for non-txn requests, in our own words.
//!
//! Pure functions of a tree version, the client's identity and the watch table: no sockets,
//! no clock, no log.

use crate::proto::{
    Acl, AddWatchMode, ClientInfo, ErrorCode, EventType, GetAclResponse,
    GetAllChildrenNumberResponse, GetChildren2Response, GetChildrenResponse, GetDataResponse,
    GetEphemeralsResponse, Id, MultiOp, OpResult, PathRequest, Request, Response, SetWatches2,
    StatResponse, WatcherType, WhoAmIResponse,
};
use crate::tree::acl::{check_acl, AuthSchemes};
use crate::tree::DataTree;
use crate::watch::{Notification, WatchManager, WatcherId};

/// Permission bits.
const READ: i32 = 1;
const ADMIN: i32 = 16;

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The session.
    pub session_id: i64,
    /// The connection (the watcher).
    pub watcher: WatcherId,
    /// Authenticated ids, including `ip`.
    pub auth: &'a [Id],
    /// Auth schemes the server knows.
    pub schemes: &'a AuthSchemes,
    /// skipACL.
    pub skip_acl: bool,
}

impl Asker<'_> {
    fn may(&self, acl: &[Acl], perm: i32) -> bool {
        self.skip_acl || check_acl(acl, perm, self.auth, self.schemes)
    }
}

/// True for the requests [`answer`] handles.
pub fn is_read(req: &Request) -> bool {
    matches!(
        req,
        Request::Exists(_)
            | Request::GetData(_)
            | Request::GetAcl(_)
            | Request::GetChildren(_)
            | Request::GetChildren2(_)
            | Request::Sync(_)
            | Request::Ping
            | Request::MultiRead(_)
            | Request::CheckWatches(_)
            | Request::RemoveWatches(_)
            | Request::GetEphemerals(_)
            | Request::GetAllChildrenNumber(_)
            | Request::AddWatch(_)
            | Request::WhoAmI
            | Request::SetWatches(_)
            | Request::SetWatches2(_)
    )
}

/// What a read produced: the reply, and notifications that setWatches fires at once.
#[derive(Debug)]
pub struct ReadOutcome {
    /// ReplyHeader err.
    pub err: ErrorCode,
    /// The body (written only when err is Ok).
    pub body: Response,
    /// Events to deliver before the reply (setWatches on reconnect).
    pub events: Vec<Notification>,
}

fn ok(body: Response) -> ReadOutcome {
    ReadOutcome { err: ErrorCode::Ok, body, events: Vec::new() }
}

fn fail(err: ErrorCode) -> ReadOutcome {
    ReadOutcome { err, body: Response::Empty, events: Vec::new() }
}

/// A digest id's password hash is hidden from clients without ADMIN on the node (3.9 masks
/// it to `user:x`).
fn mask_acl(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or_default();
                Acl { perms: a.perms, id: Id { scheme: "digest".into(), id: format!("{user}:x") } }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// Answers a read against `tree`, registering watches in `watches`.
pub fn answer(
    tree: &DataTree,
    who: &Asker<'_>,
    req: &Request,
    watches: &mut WatchManager,
) -> ReadOutcome {
    match req {
        Request::Ping => ok(Response::Empty),
        Request::Sync(r) => ok(Response::Sync(PathRequest { path: r.path.clone() })),
        Request::Exists(r) => {
            // ZooKeeper does not validate exists' path: anything that is not a node is NONODE,
            // and "" is the root (its key in ZooKeeper's node map).
            let lookup = if r.path.is_empty() { "/" } else { r.path.as_str() };
            // An existing node needs READ, as in ZooKeeper since ZOOKEEPER-2590 (3.8.4,
            // 3.9.2): checked before the watch is set, so a refused exists sets none.
            let node = tree.node(lookup);
            if let Some(n) = node {
                if !who.may(&tree.acl_of(n), READ) {
                    return fail(ErrorCode::NoAuth);
                }
            }
            if r.watch {
                // A watch on a missing node waits for its creation.
                watches.add_data_watch(&r.path, who.watcher);
            }
            match node {
                Some(n) => ok(Response::Stat(StatResponse { stat: tree.client_stat(n) })),
                None => fail(ErrorCode::NoNode),
            }
        }
        Request::GetData(r) => match get_data(tree, who, &r.path) {
            Ok(body) => {
                if r.watch {
                    watches.add_data_watch(&r.path, who.watcher);
                }
                ok(body)
            }
            Err(e) => fail(e),
        },
        Request::GetChildren(r) | Request::GetChildren2(r) => {
            let Some(node) = tree.node(&r.path) else { return fail(ErrorCode::NoNode) };
            if !who.may(&tree.acl_of(node), READ) {
                return fail(ErrorCode::NoAuth);
            }
            let (children, stat) = tree.get_children(&r.path).expect("node exists");
            if r.watch {
                watches.add_child_watch(&r.path, who.watcher);
            }
            if matches!(req, Request::GetChildren(_)) {
                ok(Response::GetChildren(GetChildrenResponse { children }))
            } else {
                ok(Response::GetChildren2(GetChildren2Response { children, stat }))
            }
        }
        Request::GetAcl(r) => {
            let Some((acl, stat)) = tree.get_acl(&r.path) else { return fail(ErrorCode::NoNode) };
            if !who.may(&acl, READ | ADMIN) {
                return fail(ErrorCode::NoAuth);
            }
            let acl = if who.may(&acl, ADMIN) { acl.to_vec() } else { mask_acl(&acl) };
            ok(Response::GetAcl(GetAclResponse { acl, stat }))
        }
        Request::GetAllChildrenNumber(r) => {
            let lookup = if r.path.is_empty() { "/" } else { r.path.as_str() };
            let Some(node) = tree.node(lookup) else { return fail(ErrorCode::NoNode) };
            if !who.may(&tree.acl_of(node), READ) {
                return fail(ErrorCode::NoAuth);
            }
            // "" finds the root under ZooKeeper's "" key, and then counts the root's "/" key
            // too: one more than for "/".
            let n =
                tree.get_all_children_number(lookup).unwrap_or(0) + i32::from(r.path.is_empty());
            ok(Response::GetAllChildrenNumber(GetAllChildrenNumberResponse { total_number: n }))
        }
        Request::GetEphemerals(r) => {
            let prefix = if r.prefix_path.is_empty() { "/" } else { r.prefix_path.as_str() };
            let ephemerals = tree.get_ephemerals(who.session_id, prefix);
            ok(Response::GetEphemerals(GetEphemeralsResponse { ephemerals }))
        }
        Request::WhoAmI => {
            // The user name is what the scheme's provider reports: the part before ':' for
            // digest, the address for ip, nothing for schemes without a provider (super).
            let client_info = who
                .auth
                .iter()
                .map(|id| {
                    let user = match id.scheme.as_str() {
                        "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                        "super" => String::new(),
                        _ => id.id.clone(),
                    };
                    ClientInfo { auth_scheme: id.scheme.clone(), user }
                })
                .collect();
            ok(Response::WhoAmI(WhoAmIResponse { client_info }))
        }
        Request::MultiRead(ops) => {
            let results = ops
                .iter()
                .map(|op| match op {
                    // ZooKeeper rebuilds multiRead's sub-ops without their watch flags: none is set.
                    MultiOp::GetData(r) => match get_data(tree, who, &r.path) {
                        Ok(Response::GetData(d)) => {
                            OpResult::GetData { data: d.data, stat: d.stat }
                        }
                        Ok(_) => unreachable!("get_data answers GetData"),
                        Err(e) => OpResult::Error { err: e.code() },
                    },
                    MultiOp::GetChildren(r) => match tree.node(&r.path) {
                        None => OpResult::Error { err: ErrorCode::NoNode.code() },
                        Some(n) if !who.may(&tree.acl_of(n), READ) => {
                            OpResult::Error { err: ErrorCode::NoAuth.code() }
                        }
                        Some(_) => {
                            let (children, _) = tree.get_children(&r.path).expect("exists");
                            OpResult::GetChildren { children }
                        }
                    },
                    _ => OpResult::Error { err: ErrorCode::BadArguments.code() },
                })
                .collect();
            ok(Response::Multi(results))
        }
        Request::AddWatch(r) => {
            let Some(mode) = AddWatchMode::from_code(r.mode) else {
                return fail(ErrorCode::BadArguments);
            };
            // Like ZooKeeper, the path is not validated: a watch on a path that can never
            // exist simply never fires.
            watches.add_persistent(&r.path, mode, who.watcher);
            ok(Response::Error(crate::proto::ErrorResponse { err: 0 }))
        }
        Request::CheckWatches(r) | Request::RemoveWatches(r) => {
            let Some(t) = WatcherType::from_code(r.watcher_type) else {
                return fail(ErrorCode::BadArguments);
            };
            let found = if matches!(req, Request::RemoveWatches(_)) {
                watches.remove_watches(&r.path, t, who.watcher)
            } else {
                watches.contains(&r.path, t, who.watcher)
            };
            if found {
                ok(Response::Empty)
            } else {
                fail(ErrorCode::NoWatcher)
            }
        }
        Request::SetWatches(w) => {
            let w2 = SetWatches2 {
                relative_zxid: w.relative_zxid,
                data_watches: w.data_watches.clone(),
                exist_watches: w.exist_watches.clone(),
                child_watches: w.child_watches.clone(),
                persistent_watches: Vec::new(),
                persistent_recursive_watches: Vec::new(),
            };
            set_watches(tree, who, &w2, watches)
        }
        Request::SetWatches2(w) => set_watches(tree, who, w, watches),
        _ => fail(ErrorCode::Unimplemented),
    }
}

fn get_data(tree: &DataTree, who: &Asker<'_>, path: &str) -> Result<Response, ErrorCode> {
    let Some(node) = tree.node(path) else { return Err(ErrorCode::NoNode) };
    if !who.may(&tree.acl_of(node), READ) {
        return Err(ErrorCode::NoAuth);
    }
    let (data, stat) = tree.get_data(path).expect("node exists");
    Ok(Response::GetData(GetDataResponse { data, stat }))
}

/// Re-registers a reconnecting client's watches (§6): a watch whose event already happened
/// (judged against the client's last seen zxid) fires now instead.
fn set_watches(
    tree: &DataTree,
    who: &Asker<'_>,
    w: &SetWatches2,
    watches: &mut WatchManager,
) -> ReadOutcome {
    let rel = w.relative_zxid;
    let mut events = Vec::new();
    let note = |event: EventType, path: &str| Notification {
        watcher: who.watcher,
        event,
        path: path.to_owned(),
    };
    for p in &w.data_watches {
        match tree.node(p).map(|n| tree.client_stat(n)) {
            None => events.push(note(EventType::NodeDeleted, p)),
            Some(s) if s.mzxid > rel => events.push(note(EventType::NodeDataChanged, p)),
            Some(_) => watches.add_data_watch(p, who.watcher),
        }
    }
    for p in &w.exist_watches {
        if tree.exists(p) {
            events.push(note(EventType::NodeCreated, p));
        } else {
            watches.add_data_watch(p, who.watcher);
        }
    }
    for p in &w.child_watches {
        match tree.node(p).map(|n| tree.client_stat(n)) {
            None => events.push(note(EventType::NodeDeleted, p)),
            Some(s) if s.pzxid > rel => events.push(note(EventType::NodeChildrenChanged, p)),
            Some(_) => watches.add_child_watch(p, who.watcher),
        }
    }
    for p in &w.persistent_watches {
        watches.add_persistent(p, AddWatchMode::Persistent, who.watcher);
    }
    for p in &w.persistent_recursive_watches {
        watches.add_persistent(p, AddWatchMode::PersistentRecursive, who.watcher);
    }
    ReadOutcome { err: ErrorCode::Ok, body: Response::Empty, events }
}
