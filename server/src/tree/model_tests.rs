//! Model-based tests: random request sequences run through `prepare` + `apply` and through a
//! naive reference model (a BTreeMap of path → node with everything recomputed from scratch),
//! comparing every result code, every node's Stat, data and ACL, children, ephemerals, counts
//! and the digest after each step. Also: replicas agree, clones are isolated, and snapshots
//! round-trip.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::proto::*;

use super::acl::digest_id;
use super::digest::node_digest;
use super::prepare::{prepare, PrepareConfig, SessionContext};
use super::zk_snapshot::{read_snapshot, write_snapshot, Trailer};
use super::{DataTree, TreeOptions, MAX_TTL};

// ---------------------------------------------------------------------------------------------
// The reference model

#[derive(Clone, Debug, PartialEq)]
struct MNode {
    data: Data,
    acl: Vec<Acl>,
    stat: StatPersisted,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: BTreeMap<String, MNode>,
    extended: bool,
}

struct Session {
    id: i64,
    auth: Vec<Id>,
}

fn parent(path: &str) -> String {
    match path.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => path[..i].into(),
        None => String::new(),
    }
}

impl Model {
    fn new(extended: bool) -> Model {
        let blank = |acl: Vec<Acl>, aversion| MNode {
            data: Data::empty(),
            acl,
            stat: StatPersisted { aversion, ..Default::default() },
        };
        let mut nodes = BTreeMap::new();
        for p in ["/", "/zookeeper", "/zookeeper/quota"] {
            nodes.insert(p.to_owned(), blank(Acl::open_unsafe(), 0));
        }
        nodes.insert("/zookeeper/config".into(), blank(Acl::read_unsafe(), -1));
        Model { nodes, extended }
    }

    fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" { "/".to_owned() } else { format!("{path}/") };
        self.nodes
            .keys()
            .filter(|k| {
                k.len() > prefix.len() && k.starts_with(&prefix) && !k[prefix.len()..].contains('/')
            })
            .map(|k| k[prefix.len()..].to_owned())
            .collect()
    }

    fn kind(&self, owner: i64) -> &'static str {
        if self.extended && (owner as u64) >> 56 == 0xff && owner & 0x00ff_ff00_0000_0000 == 0 {
            "ttl"
        } else if owner == i64::MIN {
            "container"
        } else if owner != 0 {
            "ephemeral"
        } else {
            "persistent"
        }
    }

    fn stat(&self, path: &str) -> Stat {
        let n = &self.nodes[path];
        let kids = self.children(path).len() as i32;
        Stat {
            czxid: n.stat.czxid,
            mzxid: n.stat.mzxid,
            ctime: n.stat.ctime,
            mtime: n.stat.mtime,
            version: n.stat.version,
            cversion: 2 * n.stat.cversion - kids,
            aversion: n.stat.aversion,
            ephemeral_owner: if self.kind(n.stat.ephemeral_owner) == "ephemeral" {
                n.stat.ephemeral_owner
            } else {
                0
            },
            data_length: n.data.len() as i32,
            num_children: kids,
            pzxid: n.stat.pzxid,
        }
    }

    fn allowed(&self, path: &str, perm: i32, s: &Session) -> bool {
        self.nodes[path].acl.iter().any(|a| {
            a.perms & perm != 0
                && ((a.id.scheme == "world" && a.id.id == "anyone") || s.auth.contains(&a.id))
        })
    }

    fn fixup(&self, acl: &[Acl], s: &Session) -> Result<Vec<Acl>, ErrorCode> {
        let mut out: Vec<Acl> = Vec::new();
        let mut uniq: Vec<&Acl> = Vec::new();
        for a in acl {
            if !uniq.contains(&a) {
                uniq.push(a);
            }
        }
        if uniq.is_empty() {
            return Err(ErrorCode::InvalidAcl);
        }
        let mut expanded = false;
        for a in uniq.clone() {
            match (a.id.scheme.as_str(), a.id.id.as_str()) {
                ("world", "anyone") => out.push(a.clone()),
                ("auth", _) => {
                    // One entry per authenticated id, with the union of every auth entry's
                    // permissions, at the first auth entry's place.
                    let ids: Vec<&Id> = s.auth.iter().filter(|i| i.scheme == "digest").collect();
                    if ids.is_empty() {
                        return Err(ErrorCode::InvalidAcl);
                    }
                    if expanded {
                        continue;
                    }
                    expanded = true;
                    let perms =
                        uniq.iter().filter(|x| x.id.scheme == "auth").fold(0, |p, x| p | x.perms);
                    out.extend(ids.into_iter().map(|i| Acl { perms, id: i.clone() }));
                }
                ("digest", id) if id.split(':').filter(|p| !p.is_empty()).count() == 2 => {
                    out.push(a.clone())
                }
                _ => return Err(ErrorCode::InvalidAcl),
            }
        }
        Ok(out)
    }

    fn valid(path: &str) -> bool {
        super::path::validate_path(path).is_ok()
    }

    fn next_version(v: i32, expected: i32) -> Result<i32, ErrorCode> {
        if expected != -1 && expected != v {
            return Err(ErrorCode::BadVersion);
        }
        Ok(if v + 1 == -1 { 0 } else { v + 1 })
    }

    /// Returns the created path for creates.
    fn op(
        &mut self,
        op: &MultiOp,
        s: &Session,
        zxid: i64,
        time: i64,
    ) -> Result<Option<String>, ErrorCode> {
        match op {
            MultiOp::Create(r) | MultiOp::Create2(r) => {
                self.create(&r.path, &r.data, &r.acl, r.flags, -1, false, s, zxid, time).map(Some)
            }
            MultiOp::CreateContainer(r) => {
                self.create(&r.path, &r.data, &r.acl, r.flags, -1, true, s, zxid, time).map(Some)
            }
            MultiOp::CreateTtl(r) => {
                // A createTTL must use a TTL mode.
                if CreateMode::from_code(r.flags).is_some_and(|m| !m.is_ttl()) {
                    return Err(ErrorCode::BadArguments);
                }
                self.create(&r.path, &r.data, &r.acl, r.flags, r.ttl, false, s, zxid, time)
                    .map(Some)
            }
            MultiOp::Delete(r) => {
                let p = &r.path;
                if !p.contains('/')
                    || ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"]
                        .contains(&p.as_str())
                {
                    return Err(ErrorCode::BadArguments);
                }
                let par = parent(p);
                if !self.nodes.contains_key(&par) {
                    return Err(ErrorCode::NoNode);
                }
                if !self.allowed(&par, perms::DELETE, s) {
                    return Err(ErrorCode::NoAuth);
                }
                let n = self.nodes.get(p.as_str()).ok_or(ErrorCode::NoNode)?;
                Self::next_version(n.stat.version, r.version)?;
                if !self.children(p).is_empty() {
                    return Err(ErrorCode::NotEmpty);
                }
                self.nodes.remove(p.as_str());
                self.nodes.get_mut(&par).unwrap().stat.pzxid = zxid;
                Ok(None)
            }
            MultiOp::SetData(r) => {
                if !Self::valid(&r.path) {
                    return Err(ErrorCode::BadArguments);
                }
                let n = self.nodes.get(&r.path).ok_or(ErrorCode::NoNode)?;
                if !self.allowed(&r.path, perms::WRITE, s) {
                    return Err(ErrorCode::NoAuth);
                }
                let v = Self::next_version(n.stat.version, r.version)?;
                let n = self.nodes.get_mut(&r.path).unwrap();
                n.data = r.data.clone();
                n.stat.version = v;
                n.stat.mzxid = zxid;
                n.stat.mtime = time;
                Ok(None)
            }
            MultiOp::Check(r) => {
                if !Self::valid(&r.path) {
                    return Err(ErrorCode::BadArguments);
                }
                let n = self.nodes.get(&r.path).ok_or(ErrorCode::NoNode)?;
                if !self.allowed(&r.path, perms::READ, s) {
                    return Err(ErrorCode::NoAuth);
                }
                Self::next_version(n.stat.version, r.version)?;
                Ok(None)
            }
            MultiOp::GetChildren(_) | MultiOp::GetData(_) => Err(ErrorCode::MarshallingError),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        path: &str,
        data: &Data,
        acl: &[Acl],
        flags: i32,
        ttl: i64,
        container_op: bool,
        s: &Session,
        zxid: i64,
        time: i64,
    ) -> Result<String, ErrorCode> {
        let mode = CreateMode::from_code(flags).ok_or(ErrorCode::BadArguments)?;
        if mode.is_ttl() && !self.extended {
            return Err(ErrorCode::Unimplemented);
        }
        let ttl_ok = if mode.is_ttl() { ttl > 0 && ttl <= MAX_TTL } else { ttl < 0 };
        if !ttl_ok {
            return Err(ErrorCode::BadArguments);
        }
        if !path.contains('/') {
            return Err(ErrorCode::BadArguments);
        }
        let acl = self.fixup(acl, s)?;
        let par = parent(path);
        let pnode = self.nodes.get(&par).ok_or(ErrorCode::NoNode)?.clone();
        if !self.allowed(&par, perms::CREATE, s) {
            return Err(ErrorCode::NoAuth);
        }
        let path = if mode.is_sequential() {
            format!("{path}{:010}", pnode.stat.cversion)
        } else {
            path.to_owned()
        };
        if !Self::valid(&path) {
            return Err(ErrorCode::BadArguments);
        }
        if self.nodes.contains_key(&path) {
            return Err(ErrorCode::NodeExists);
        }
        if self.kind(pnode.stat.ephemeral_owner) == "ephemeral" {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let owner = if container_op {
            i64::MIN
        } else if mode.is_ttl() {
            (0xff_u64 << 56) as i64 | ttl
        } else if mode.is_ephemeral() {
            s.id
        } else {
            0
        };
        let p = self.nodes.get_mut(&par).unwrap();
        p.stat.cversion += 1;
        p.stat.pzxid = zxid;
        let stat = StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            ephemeral_owner: owner,
            pzxid: zxid,
            ..Default::default()
        };
        self.nodes.insert(path.clone(), MNode { data: data.clone(), acl, stat });
        Ok(path)
    }

    fn set_acl(&mut self, r: &SetAclRequest, s: &Session) -> Result<(), ErrorCode> {
        if !Self::valid(&r.path) {
            return Err(ErrorCode::BadArguments);
        }
        let acl = self.fixup(&r.acl, s)?;
        let n = self.nodes.get(&r.path).ok_or(ErrorCode::NoNode)?;
        if !self.allowed(&r.path, perms::ADMIN, s) {
            return Err(ErrorCode::NoAuth);
        }
        let v = Self::next_version(n.stat.aversion, r.version)?;
        let n = self.nodes.get_mut(&r.path).unwrap();
        n.acl = acl;
        n.stat.aversion = v;
        Ok(())
    }

    fn close_session(&mut self, id: i64, zxid: i64) {
        let doomed: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.stat.ephemeral_owner == id && self.kind(id) == "ephemeral")
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            self.nodes.remove(&p);
            self.nodes.get_mut(&parent(&p)).unwrap().stat.pzxid = zxid;
        }
    }

    /// Expected (top-level err, per-op errs for multi).
    fn run(&mut self, req: &Request, s: &Session, zxid: i64, time: i64) -> (i32, Vec<i32>) {
        let single = |m: &mut Model, op: MultiOp| -> (i32, Vec<i32>) {
            (m.op(&op, s, zxid, time).err().map_or(0, |e| e.code()), vec![])
        };
        match req {
            Request::Create(r) => single(self, MultiOp::Create(r.clone())),
            Request::Create2(r) => single(self, MultiOp::Create2(r.clone())),
            Request::CreateContainer(r) => single(self, MultiOp::CreateContainer(r.clone())),
            Request::CreateTtl(r) => single(self, MultiOp::CreateTtl(r.clone())),
            Request::Delete(r) => single(self, MultiOp::Delete(r.clone())),
            Request::SetData(r) => single(self, MultiOp::SetData(r.clone())),
            Request::SetAcl(r) => (self.set_acl(r, s).err().map_or(0, |e| e.code()), vec![]),
            Request::CloseSession => {
                self.close_session(s.id, zxid);
                (0, vec![])
            }
            Request::Multi(ops) => {
                let mut scratch = self.clone();
                for (i, op) in ops.iter().enumerate() {
                    if let Err(e) = scratch.op(op, s, zxid, time) {
                        let mut errs = vec![0; i];
                        errs.push(e.code());
                        errs.resize(ops.len(), ErrorCode::RuntimeInconsistency.code());
                        return (e.code(), errs);
                    }
                }
                *self = scratch;
                (0, vec![0; ops.len()])
            }
            _ => unreachable!("not generated"),
        }
    }

    fn digest(&self) -> i64 {
        let mut sum = 0u64;
        for (p, n) in &self.nodes {
            sum = sum.wrapping_add(u64::from(node_digest(p, n.data.as_option(), &n.stat)));
        }
        sum as i64
    }
}

fn check_same(tree: &DataTree, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(tree.node_count(), model.nodes.len() + 1);
    let mut size = 0i64;
    for (path, n) in &model.nodes {
        let (data, stat) =
            tree.get_data(path).ok_or_else(|| TestCaseError::fail(format!("missing {path}")))?;
        prop_assert_eq!(&data, &n.data, "data of {}", path);
        prop_assert_eq!(stat, model.stat(path), "stat of {}", path);
        let (acl, _) = tree.get_acl(path).unwrap();
        prop_assert_eq!(&acl[..], &n.acl[..], "acl of {}", path);
        let (kids, _) = tree.get_children(path).unwrap();
        prop_assert_eq!(kids, model.children(path), "children of {}", path);
        size += path.len() as i64 + n.data.len() as i64;
    }
    prop_assert_eq!(tree.approximate_data_size(), size);
    prop_assert_eq!(tree.digest(), model.digest());
    for id in [1i64, 2] {
        let expected: Vec<String> = model
            .nodes
            .iter()
            .filter(|(_, n)| n.stat.ephemeral_owner == id)
            .map(|(p, _)| p.clone())
            .collect();
        prop_assert_eq!(tree.ephemerals(id), expected);
    }
    let containers: Vec<String> = model
        .nodes
        .iter()
        .filter(|(_, n)| n.stat.ephemeral_owner == i64::MIN)
        .map(|(p, _)| p.clone())
        .collect();
    let mut got = tree.containers();
    got.sort();
    prop_assert_eq!(got, containers);
    prop_assert_eq!(tree.get_all_children_number("/"), Some(model.nodes.len() as i32 - 1));
    let preorder: Vec<&str> = tree.iter_preorder().map(|(p, _)| p).collect();
    prop_assert_eq!(preorder.len(), model.nodes.len());
    for (i, p) in preorder.iter().enumerate().skip(1) {
        prop_assert!(preorder[..i].contains(&parent(p).as_str()), "{} before its parent", p);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators

fn any_path() -> BoxedStrategy<String> {
    let name = || prop_oneof![Just("a"), Just("b"), Just("c")];
    let depth = |n: usize| {
        proptest::collection::vec(name(), n).prop_map(|parts| format!("/{}", parts.join("/")))
    };
    prop_oneof![
        4 => depth(1),
        4 => depth(2),
        2 => depth(3),
        1 => prop_oneof![
            Just(String::new()),
            Just("a".to_owned()),
            Just("/a/".to_owned()),
            Just("//a".to_owned()),
            Just("/a/.".to_owned()),
            Just("/".to_owned()),
            Just("/zookeeper".to_owned()),
            Just("/zookeeper/quota".to_owned()),
            Just("/zookeeper/config".to_owned()),
            Just("/missing/".to_owned()),
        ],
    ]
    .boxed()
}

fn any_acl() -> BoxedStrategy<Vec<Acl>> {
    prop_oneof![
        6 => Just(Acl::open_unsafe()),
        1 => Just(Acl::read_unsafe()),
        1 => Just(Acl::creator_all()),
        1 => Just(vec![Acl::new(perms::ALL, "digest", &digest_id("u1", "p1"))]),
        1 => Just(vec![Acl::new(perms::READ | perms::CREATE, "world", "anyone")]),
        1 => Just(vec![]),
        1 => Just(vec![Acl::new(perms::ALL, "world", "bogus")]),
        1 => Just([Acl::open_unsafe(), Acl::open_unsafe()].concat()),
    ]
    .boxed()
}

fn any_data() -> impl Strategy<Value = Data> {
    prop_oneof![
        Just(Data::null()),
        Just(Data::empty()),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Data::from),
    ]
}

fn any_version() -> impl Strategy<Value = i32> {
    prop_oneof![3 => Just(-1), 1 => 0..3]
}

fn any_create() -> BoxedStrategy<CreateRequest> {
    (
        any_path(),
        any_data(),
        any_acl(),
        prop_oneof![10 => 0..4, 1 => 4..7, 1 => Just(-1), 1 => Just(9)],
    )
        .prop_map(|(path, data, acl, flags)| CreateRequest { path, data, acl, flags })
        .boxed()
}

fn any_op() -> BoxedStrategy<MultiOp> {
    prop_oneof![
        6 => any_create().prop_map(MultiOp::Create),
        2 => any_create().prop_map(MultiOp::Create2),
        1 => any_create().prop_map(|mut r| { r.flags = 4; MultiOp::CreateContainer(r) }),
        1 => (any_create(), prop_oneof![Just(-1i64), Just(0), Just(100), Just(MAX_TTL + 1)])
            .prop_map(|(r, ttl)| MultiOp::CreateTtl(CreateTtlRequest {
                path: r.path, data: r.data, acl: r.acl, flags: if r.flags < 2 { 5 } else { r.flags }, ttl
            })),
        3 => (any_path(), any_version()).prop_map(|(path, version)| MultiOp::Delete(DeleteRequest { path, version })),
        3 => (any_path(), any_data(), any_version())
            .prop_map(|(path, data, version)| MultiOp::SetData(SetDataRequest { path, data, version })),
        1 => (any_path(), any_version()).prop_map(|(path, version)| MultiOp::Check(CheckVersionRequest { path, version })),
    ]
    .boxed()
}

fn any_request() -> BoxedStrategy<Request> {
    prop_oneof![
        10 => any_op().prop_filter_map("single op", |op| match op {
            MultiOp::Create(r) => Some(Request::Create(r)),
            MultiOp::Create2(r) => Some(Request::Create2(r)),
            MultiOp::CreateContainer(r) => Some(Request::CreateContainer(r)),
            MultiOp::CreateTtl(r) => Some(Request::CreateTtl(r)),
            MultiOp::Delete(r) => Some(Request::Delete(r)),
            MultiOp::SetData(r) => Some(Request::SetData(r)),
            _ => None,
        }),
        2 => (any_path(), any_acl(), any_version())
            .prop_map(|(path, acl, version)| Request::SetAcl(SetAclRequest { path, acl, version })),
        3 => proptest::collection::vec(any_op(), 0..5).prop_map(Request::Multi),
        1 => Just(Request::CloseSession),
    ]
    .boxed()
}

fn sessions() -> [Session; 2] {
    [
        Session {
            id: 1,
            auth: vec![Id::new("ip", "127.0.0.1"), Id::new("digest", &digest_id("u1", "p1"))],
        },
        Session {
            id: 2,
            auth: vec![Id::new("ip", "127.0.0.1"), Id::new("digest", &digest_id("u2", "p2"))],
        },
    ]
}

/// Prepare and apply a request on `tree`, returning (top err, multi errs) as the client sees it.
fn run_tree(
    tree: &mut DataTree,
    cfg: &PrepareConfig,
    req: &Request,
    s: &Session,
    zxid: i64,
    time: i64,
) -> (i32, Vec<i32>, Txn) {
    let ctx = SessionContext { session_id: s.id, auth: &s.auth, local_session: false };
    let txn = prepare(tree, &ctx, cfg, req, zxid, time).unwrap_or_else(Txn::error);
    let hdr = TxnHeader { client_id: s.id, cxid: 0, zxid, time, op: txn.opcode().code() };
    let out = tree.apply(&hdr, &txn);
    let multi = out.result.multi.iter().map(|r| r.err).collect();
    (out.result.err, multi, txn)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_model(
        steps in proptest::collection::vec((any_request(), 0usize..2), 1..60),
        extended in any::<bool>(),
        clone_at in 0usize..60,
    ) {
        let options = TreeOptions { extended_types: extended };
        let cfg = PrepareConfig { extended_types: extended, ..PrepareConfig::default() };
        let mut tree = DataTree::new(options.clone());
        let mut replica = DataTree::new(options.clone());
        let mut model = Model::new(extended);
        let sessions = sessions();
        let mut frozen: Option<(DataTree, Model)> = None;
        check_same(&tree, &model)?;
        for (i, (req, who)) in steps.iter().enumerate() {
            if i == clone_at {
                frozen = Some((tree.clone(), model.clone()));
            }
            let s = &sessions[*who];
            let zxid = i as i64 + 1;
            let time = 1000 + i as i64;
            let (err, multi, txn) = run_tree(&mut tree, &cfg, req, s, zxid, time);
            let (want_err, want_multi) = model.run(req, s, zxid, time);
            prop_assert_eq!(err, want_err, "step {}: {:?}", i, req);
            prop_assert_eq!(multi, want_multi, "step {}: {:?}", i, req);
            check_same(&tree, &model)?;

            // A replica applying the logged bytes of the same txn ends up identical.
            let hdr = TxnHeader { client_id: s.id, cxid: 0, zxid, time, op: txn.opcode().code() };
            let entry = TxnEntry { header: hdr, txn, digest: None }.encode();
            let entry = TxnEntry::decode(&entry, DEFAULT_MAX_LEN).unwrap();
            replica.apply(&entry.header, &entry.txn);
            prop_assert!(replica == tree, "replica diverged at step {}", i);
        }
        if let Some((old_tree, old_model)) = frozen {
            check_same(&old_tree, &old_model)?;
        }
        let mut bytes = Vec::new();
        write_snapshot(&mut bytes, &tree, &[(1, 5000)], Trailer::default()).unwrap();
        let loaded = read_snapshot(&bytes, options, None).unwrap();
        prop_assert!(loaded.tree == tree, "snapshot round trip differs");
        check_same(&loaded.tree, &model)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Targeted cases

fn create_req(path: &str, flags: i32) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Data::from("x"),
        acl: Acl::open_unsafe(),
        flags,
    })
}

fn step(tree: &mut DataTree, req: &Request, session: i64, zxid: i64) -> super::ApplyOutcome {
    let auth = [Id::new("digest", &digest_id("u1", "p1"))];
    let ctx = SessionContext { session_id: session, auth: &auth, local_session: false };
    let txn = prepare(tree, &ctx, &PrepareConfig::default(), req, zxid, zxid * 10)
        .unwrap_or_else(Txn::error);
    let hdr =
        TxnHeader { client_id: session, cxid: 0, zxid, time: zxid * 10, op: txn.opcode().code() };
    tree.apply(&hdr, &txn)
}

#[test]
fn fresh_tree_counts_like_zookeeper() {
    let tree = DataTree::default();
    assert_eq!(tree.node_count(), 5);
    assert_eq!(tree.get_all_children_number("/"), Some(3));
    assert_eq!(tree.stat(super::CONFIG_PATH).unwrap().aversion, -1);
    assert_eq!(tree.get_children("/").unwrap().0, vec!["zookeeper".to_owned()]);
    // "/zookeeper" and the root contribute to the digest; the /zookeeper/ subtree does not.
    let z = StatPersisted::default();
    let expected = u64::from(node_digest("/", Some(b""), &z))
        + u64::from(node_digest("/zookeeper", Some(b""), &z));
    assert_eq!(tree.digest(), expected as i64);
}

#[test]
fn sequence_numbers_and_cversion_follow_zookeeper() {
    // Live 3.8.0: create /q/a → cversion 1; delete → 2; seq create → 3 (/q/s0000000001); ...
    let mut t = DataTree::default();
    step(&mut t, &create_req("/q", 0), 1, 1);
    step(&mut t, &create_req("/q/a", 0), 1, 2);
    assert_eq!(t.stat("/q").unwrap().cversion, 1);
    step(&mut t, &Request::Delete(DeleteRequest { path: "/q/a".into(), version: -1 }), 1, 3);
    assert_eq!(t.stat("/q").unwrap().cversion, 2);
    let out = step(&mut t, &create_req("/q/s", 2), 1, 4);
    assert_eq!(out.result.path.as_deref(), Some("/q/s0000000001"));
    assert_eq!(t.stat("/q").unwrap().cversion, 3);
    step(&mut t, &create_req("/q/b", 0), 1, 5);
    assert_eq!(t.stat("/q").unwrap().cversion, 4);
    step(&mut t, &Request::Delete(DeleteRequest { path: "/q/b".into(), version: -1 }), 1, 6);
    assert_eq!(t.stat("/q").unwrap().cversion, 5);
    let out = step(&mut t, &create_req("/q/s", 2), 1, 7);
    assert_eq!(out.result.path.as_deref(), Some("/q/s0000000003"));
    assert_eq!(t.stat("/q").unwrap().pzxid, 7);
}

#[test]
fn error_precedence_for_create() {
    let mut t = DataTree::default();
    let err = |t: &mut DataTree, r: &Request| step(t, r, 1, 9).result.err;
    // Parent lookup comes before path validation.
    assert_eq!(err(&mut t, &create_req("/missing/", 0)), ErrorCode::NoNode.code());
    assert_eq!(err(&mut t, &create_req("/a/", 0)), ErrorCode::NoNode.code());
    step(&mut t, &create_req("/a", 0), 1, 10);
    assert_eq!(err(&mut t, &create_req("/a/", 0)), ErrorCode::BadArguments.code());
    // A sequential create of "/a/" is valid: the suffix makes the name.
    assert_eq!(err(&mut t, &create_req("/a/", 2)), 0);
    assert_eq!(err(&mut t, &create_req("/a", 7)), ErrorCode::BadArguments.code());
    assert_eq!(err(&mut t, &create_req("/a", 5)), ErrorCode::Unimplemented.code());
    assert_eq!(err(&mut t, &create_req("/a", 0)), ErrorCode::NodeExists.code());
    let empty = Request::Create(CreateRequest {
        path: "/x".into(),
        data: Data::null(),
        acl: vec![],
        flags: 0,
    });
    assert_eq!(err(&mut t, &empty), ErrorCode::InvalidAcl.code());
    step(&mut t, &create_req("/e", 1), 1, 11);
    assert_eq!(err(&mut t, &create_req("/e/c", 0)), ErrorCode::NoChildrenForEphemerals.code());
    assert_eq!(err(&mut t, &create_req("/zookeeper/config/x", 0)), ErrorCode::NoAuth.code());
    let del = |p: &str| Request::Delete(DeleteRequest { path: p.into(), version: -1 });
    assert_eq!(err(&mut t, &del("/zookeeper")), ErrorCode::BadArguments.code());
    assert_eq!(err(&mut t, &del("/")), ErrorCode::BadArguments.code());
    assert_eq!(err(&mut t, &del("/nope/x")), ErrorCode::NoNode.code());
}

#[test]
fn failed_multi_is_one_txn_of_errors() {
    // Live 3.8.0: create, create, create-under-missing-parent, create →
    // [RolledBack(0), RolledBack(0), NoNode, RuntimeInconsistency].
    let mut t = DataTree::default();
    let before = t.clone();
    let c = |p: &str| {
        MultiOp::Create(CreateRequest {
            path: p.into(),
            data: Data::empty(),
            acl: Acl::open_unsafe(),
            flags: 0,
        })
    };
    let req = Request::Multi(vec![c("/m1"), c("/m2"), c("/nope/x"), c("/m3")]);
    let out = step(&mut t, &req, 1, 1);
    let errs: Vec<i32> = out.result.multi.iter().map(|r| r.err).collect();
    assert_eq!(errs, vec![0, 0, -101, -2]);
    assert!(out.result.multi.iter().all(|r| r.op == OpCode::Error));
    let (err, body) = out.result.reply();
    assert_eq!(err, 0);
    assert_eq!(
        body,
        Response::Multi(vec![
            OpResult::Error { err: 0 },
            OpResult::Error { err: 0 },
            OpResult::Error { err: -101 },
            OpResult::Error { err: -2 },
        ])
    );
    assert!(out.triggers.is_empty());
    assert!(t == before);
    assert_eq!(t.last_processed_zxid(), 1);
    // The same ops against a tree where they succeed give typed results.
    let ok = Request::Multi(vec![
        c("/m1"),
        MultiOp::Create2(CreateRequest {
            path: "/m2".into(),
            data: Data::empty(),
            acl: Acl::open_unsafe(),
            flags: 0,
        }),
    ]);
    let out = step(&mut t, &ok, 1, 2);
    match out.result.reply().1 {
        Response::Multi(r) => {
            assert_eq!(r[0], OpResult::Create { path: "/m1".into() });
            assert!(
                matches!(&r[1], OpResult::Create2 { path, stat } if path == "/m2" && stat.czxid == 2)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_session_removes_ephemerals_and_fires_watches() {
    let mut t = DataTree::default();
    step(&mut t, &create_req("/p", 0), 1, 1);
    step(&mut t, &create_req("/p/e1", 1), 7, 2);
    step(&mut t, &create_req("/p/e2", 3), 7, 3);
    step(&mut t, &create_req("/p/o", 1), 8, 4);
    assert_eq!(t.ephemerals(7), vec!["/p/e1".to_owned(), "/p/e20000000001".to_owned()]);
    assert_eq!(t.get_ephemerals(7, "/p/e2"), vec!["/p/e20000000001".to_owned()]);
    assert_eq!(t.ephemerals_count(), 3);
    let ctx = SessionContext { session_id: 7, auth: &[], local_session: false };
    let txn = prepare(&t, &ctx, &PrepareConfig::default(), &Request::CloseSession, 5, 50).unwrap();
    assert_eq!(
        txn,
        Txn::CloseSession(CloseSessionTxn {
            paths_to_delete: Some(vec!["/p/e1".into(), "/p/e20000000001".into()])
        })
    );
    let out = t.apply(&TxnHeader { client_id: 7, cxid: 0, zxid: 5, time: 50, op: -11 }, &txn);
    assert_eq!(out.triggers.iter().filter(|w| w.event == EventType::NodeDeleted).count(), 2);
    assert!(t.ephemerals(7).is_empty());
    assert_eq!(t.sessions_with_ephemerals(), vec![8]);
    assert_eq!(t.stat("/p").unwrap().pzxid, 5);
    assert_eq!(t.stat("/p").unwrap().num_children, 1);
}

#[test]
fn containers_and_ttl_hide_their_owner() {
    let mut t = DataTree::new(TreeOptions { extended_types: true });
    let auth = [];
    let ctx = SessionContext { session_id: 3, auth: &auth, local_session: false };
    let cfg = PrepareConfig { extended_types: true, ..PrepareConfig::default() };
    let reqs = [
        Request::CreateContainer(CreateRequest {
            path: "/c".into(),
            data: Data::empty(),
            acl: Acl::open_unsafe(),
            flags: 4,
        }),
        Request::CreateTtl(CreateTtlRequest {
            path: "/t".into(),
            data: Data::empty(),
            acl: Acl::open_unsafe(),
            flags: 5,
            ttl: 100,
        }),
    ];
    for (i, r) in reqs.iter().enumerate() {
        let txn = prepare(&t, &ctx, &cfg, r, i as i64 + 1, 0).unwrap();
        let out = t.apply(
            &TxnHeader {
                client_id: 3,
                cxid: 0,
                zxid: i as i64 + 1,
                time: 0,
                op: txn.opcode().code(),
            },
            &txn,
        );
        assert_eq!(out.result.stat.unwrap().ephemeral_owner, 0);
    }
    assert_eq!(t.node("/c").unwrap().stat.ephemeral_owner, i64::MIN);
    assert_eq!(t.node("/t").unwrap().stat.ephemeral_owner as u64, 0xff00_0000_0000_0064);
    assert_eq!(t.containers(), vec!["/c".to_owned()]);
    assert_eq!(t.ttls(), vec!["/t".to_owned()]);
    // deleteContainer refuses ephemerals (BADVERSION) and non-empty nodes.
    let dc = |p: &str| Request::DeleteContainer(DeleteRequest { path: p.into(), version: -1 });
    assert_eq!(prepare(&t, &ctx, &cfg, &dc("/c"), 9, 0).unwrap().opcode(), OpCode::DeleteContainer);
}

#[test]
fn quotas_count_and_enforce_hard_limits() {
    let mut t = DataTree::default();
    let mk = |p: &str, d: &str| {
        Request::Create(CreateRequest {
            path: p.into(),
            data: Data::from(d),
            acl: Acl::open_unsafe(),
            flags: 0,
        })
    };
    let mut z = 0;
    let mut run = |t: &mut DataTree, r: Request, cfg: &PrepareConfig| {
        z += 1;
        let ctx = SessionContext { session_id: 1, auth: &[], local_session: false };
        let txn = prepare(t, &ctx, cfg, &r, z, 0).unwrap_or_else(Txn::error);
        t.apply(
            &TxnHeader { client_id: 1, cxid: 0, zxid: z, time: 0, op: txn.opcode().code() },
            &txn,
        )
        .result
        .err
    };
    let lax = PrepareConfig::default();
    let strict = PrepareConfig { enforce_quota: true, ..PrepareConfig::default() };
    run(&mut t, mk("/app", "12"), &lax);
    run(&mut t, mk("/app/x", "345"), &lax);
    run(&mut t, mk("/zookeeper/quota/app", ""), &lax);
    run(
        &mut t,
        mk("/zookeeper/quota/app/zookeeper_limits", "count=-1,bytes=-1=;countHardLimit=3"),
        &lax,
    );
    run(&mut t, mk("/zookeeper/quota/app/zookeeper_stats", "count=0,bytes=0"), &lax);
    let stats = || t.get_data("/zookeeper/quota/app/zookeeper_stats").unwrap().0;
    assert_eq!(stats().as_slice(), b"count=2,bytes=5");
    assert_eq!(run(&mut t, mk("/app/y", "6"), &strict), 0);
    assert_eq!(
        t.get_data("/zookeeper/quota/app/zookeeper_stats").unwrap().0.as_slice(),
        b"count=3,bytes=6"
    );
    assert_eq!(run(&mut t, mk("/app/z", ""), &strict), ErrorCode::QuotaExceeded.code());
    // Without enforcement the limit is only a soft one.
    assert_eq!(run(&mut t, mk("/app/z", ""), &lax), 0);
    assert_eq!(
        t.get_data("/zookeeper/quota/app/zookeeper_stats").unwrap().0.as_slice(),
        b"count=4,bytes=6"
    );
    // Malformed quota data is refused.
    assert_eq!(
        run(&mut t, mk("/zookeeper/quota/b/zookeeper_limits", "junk"), &lax),
        ErrorCode::NoNode.code()
    );
    run(&mut t, mk("/zookeeper/quota/b", ""), &lax);
    assert_eq!(
        run(&mut t, mk("/zookeeper/quota/b/zookeeper_limits", "junk"), &lax),
        ErrorCode::BadArguments.code()
    );
    // Quota stats are rebuilt when a snapshot is loaded.
    let mut bytes = Vec::new();
    write_snapshot(&mut bytes, &t, &[], Trailer::default()).unwrap();
    let loaded = read_snapshot(&bytes, TreeOptions::default(), None).unwrap().tree;
    assert_eq!(loaded.max_quota_prefix("/app/x"), Some("/app"));
    assert!(loaded == t);
}

#[test]
fn clone_is_isolated_and_shares_structure() {
    let mut t = DataTree::default();
    step(&mut t, &create_req("/a", 0), 1, 1);
    let snapshot = t.clone();
    step(&mut t, &create_req("/b", 0), 1, 2);
    step(
        &mut t,
        &Request::SetData(SetDataRequest {
            path: "/a".into(),
            data: Data::from("new"),
            version: -1,
        }),
        1,
        3,
    );
    assert!(!snapshot.exists("/b"));
    assert_eq!(snapshot.get_data("/a").unwrap().0.as_slice(), b"x");
    assert_eq!(t.get_data("/a").unwrap().0.as_slice(), b"new");
    assert_ne!(snapshot.digest(), t.digest());
}
