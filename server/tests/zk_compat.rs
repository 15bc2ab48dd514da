//! Compatibility with files written by Apache ZooKeeper 3.8.0 (Debian's package, standalone,
//! extendedTypesEnabled=true). The fixtures in tests/data/zk-3.8.0 were made by starting a fresh
//! server, running one zkCli session (creates of every kind, setData, setAcl, a delete, a create
//! under a missing parent, addauth + auth ACL, setquota and writes under the quota; the session's
//! ephemerals went with its closeSession), and restarting it so it wrote snapshot.16. log.1 is
//! cut after its last record (the original is zero-padded to 64 MiB).
//!
//! The test replays ZooKeeper's own txn log on ZooKeeper's own initial snapshot and checks, after
//! every txn, that our tree digest equals the digest ZooKeeper logged with the txn; and that the
//! final tree equals the tree loaded from ZooKeeper's later snapshot.

use corral_server::proto::{
    Acl, CheckVersionRequest, CreateRequest, Data, DeleteRequest, MultiOp, OpCode, Request,
    SetDataRequest, Txn, TxnEntry, DEFAULT_MAX_LEN,
};
use corral_server::tree::prepare::{prepare, prepare_close_session, PrepareConfig, SessionContext};
use corral_server::tree::zk_snapshot::{read_snapshot, write_snapshot, Trailer};
use corral_server::tree::{DataTree, TreeOptions};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/zk-3.8.0");
const MULTI_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/zk-3.8.0-multi");

fn options() -> TreeOptions {
    TreeOptions { extended_types: true }
}

fn read(name: &str) -> Vec<u8> {
    read_in(DIR, name)
}

fn read_in(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!("{dir}/{name}")).expect("fixture")
}

/// The records of a ZooKeeper txn log: (Adler32 checksum, entry bytes).
fn log_records(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    assert_eq!(&bytes[..4], b"ZKLG");
    let mut pos = 16;
    let mut out = Vec::new();
    loop {
        let checksum = u64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        if len == 0 {
            return out;
        }
        let entry = &bytes[pos + 12..pos + 12 + len];
        assert_eq!(bytes[pos + 12 + len], b'B');
        out.push((checksum, entry));
        pos += 12 + len + 1;
    }
}

#[test]
fn fresh_snapshot_is_our_fresh_tree() {
    let snap = read_snapshot(&read("snapshot.0"), options(), None).unwrap();
    assert!(snap.tree == DataTree::new(options()));
    assert!(snap.sessions.is_empty());
    let mut ours = Vec::new();
    write_snapshot(&mut ours, &snap.tree, &[], Trailer::default()).unwrap();
    // Same layout and size; only the digest section differs (ZooKeeper writes 0 before any txn).
    assert_eq!(ours.len(), read("snapshot.0").len());
}

#[test]
fn replaying_zookeepers_log_reproduces_its_digests_and_snapshot() {
    let mut tree = read_snapshot(&read("snapshot.0"), options(), None).unwrap().tree;
    let log = read("log.1");
    let records = log_records(&log);
    assert_eq!(records.len(), 22);
    let mut seen_ops = Vec::new();
    for (checksum, entry) in records {
        let mut adler = adler2::Adler32::new();
        adler.write_slice(entry);
        assert_eq!(u64::from(adler.checksum()), checksum);
        let e = TxnEntry::decode(entry, DEFAULT_MAX_LEN).unwrap();
        // Our encoding of the decoded entry is byte-identical to ZooKeeper's.
        assert_eq!(e.encode(), entry, "re-encoding txn {:#x}", e.header.zxid);
        tree.apply(&e.header, &e.txn);
        seen_ops.push(OpCode::from_code(e.header.op).unwrap());
        match e.digest {
            Some(digest) => {
                assert_eq!(digest.version, 2);
                assert_eq!(
                    tree.digest(),
                    digest.tree_digest,
                    "digest after txn {:#x} ({:?})",
                    e.header.zxid,
                    e.txn
                );
            }
            // A write that failed in preparation is logged without a digest.
            None => assert_eq!(e.header.op, OpCode::Error.code()),
        }
    }
    for op in [
        OpCode::CreateSession,
        OpCode::CloseSession,
        OpCode::Create,
        OpCode::CreateContainer,
        OpCode::CreateTtl,
        OpCode::Delete,
        OpCode::SetData,
        OpCode::SetAcl,
        OpCode::Error,
    ] {
        assert!(seen_ops.contains(&op), "{op:?} missing from the fixture");
    }

    let later = read_snapshot(&read("snapshot.16"), options(), None).unwrap();
    assert_eq!(later.zxid_digest.as_ref().map(|d| d.zxid), Some(0x16));
    assert_eq!(later.zxid_digest.as_ref().map(|d| d.digest), Some(tree.digest()));
    assert!(later.tree == tree, "tree replayed from the log differs from ZooKeeper's snapshot");
    assert_eq!(tree.max_quota_prefix("/app/svc"), Some("/app"));
    assert_eq!(tree.stat("/app").unwrap().cversion, 7);
}

/// The Java client's requests behind tests/data/zk-3.8.0-multi (see Multi.java.txt there), in
/// the order the server received them.
fn multi_fixture_requests() -> Vec<Request> {
    let create = |path: &str, data: Data, flags| CreateRequest {
        path: path.into(),
        data,
        acl: Acl::open_unsafe(),
        flags,
    };
    let empty = Data::empty;
    vec![
        Request::Create(create("/m", Data::from("root"), 0)),
        Request::Create2(create("/m/c2", Data::null(), 0)),
        Request::Multi(vec![
            MultiOp::Create(create("/m/a", empty(), 0)),
            MultiOp::Create(create("/m/b", empty(), 0)),
            MultiOp::Create(create("/missing/x", empty(), 0)),
            MultiOp::Create(create("/m/c", empty(), 0)),
        ]),
        Request::Multi(vec![
            MultiOp::Create(create("/m/a", Data::from("x"), 0)),
            MultiOp::Create(create("/m/s-", empty(), 2)),
            MultiOp::Create(create("/m/s-", empty(), 3)),
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: Data::from("new"),
                version: 0,
            }),
            MultiOp::Check(CheckVersionRequest { path: "/m".into(), version: 1 }),
            MultiOp::Delete(DeleteRequest { path: "/m/a".into(), version: -1 }),
        ]),
        Request::Multi(vec![
            MultiOp::SetData(SetDataRequest {
                path: "/m".into(),
                data: Data::from("zzz"),
                version: -1,
            }),
            MultiOp::Check(CheckVersionRequest { path: "/m".into(), version: 7 }),
        ]),
        Request::SetData(SetDataRequest { path: "/m".into(), data: Data::from("v"), version: 42 }),
        Request::Create(create("/m/e", Data::from("eph"), 1)),
        Request::CloseSession,
    ]
}

#[test]
fn prepare_produces_zookeepers_txns_for_multi_and_errors() {
    let mut tree = read_snapshot(&read_in(MULTI_DIR, "snapshot.0"), options(), None).unwrap().tree;
    let log = read_in(MULTI_DIR, "log.1");
    let mut records = log_records(&log).into_iter();
    let (_, first) = records.next().unwrap();
    let first = TxnEntry::decode(first, DEFAULT_MAX_LEN).unwrap();
    assert_eq!(first.header.op, OpCode::CreateSession.code());
    tree.apply(&first.header, &first.txn);
    let session = first.header.client_id;
    let cfg = PrepareConfig { extended_types: true, ..PrepareConfig::default() };
    let requests = multi_fixture_requests();
    assert_eq!(records.len(), requests.len());
    for (req, (_, entry)) in requests.iter().zip(records) {
        let e = TxnEntry::decode(entry, DEFAULT_MAX_LEN).unwrap();
        assert_eq!(e.header.client_id, session);
        let ctx = SessionContext { session_id: session, auth: &[], local_session: false };
        let ours = match req {
            Request::CloseSession => prepare_close_session(&tree, session, &cfg),
            _ => prepare(&tree, &ctx, &cfg, req, e.header.zxid, e.header.time)
                .unwrap_or_else(Txn::error),
        };
        // ZooKeeper lists a closing session's ephemerals in HashSet order; we sort them.
        let normalise = |t: &Txn| match t {
            Txn::CloseSession(c) => {
                let mut c = c.clone();
                if let Some(p) = c.paths_to_delete.as_mut() {
                    p.sort();
                }
                Txn::CloseSession(c)
            }
            t => t.clone(),
        };
        assert_eq!(normalise(&ours), normalise(&e.txn), "txn {:#x} for {req:?}", e.header.zxid);
        assert_eq!(ours.opcode().code(), e.header.op);
        tree.apply(&e.header, &e.txn);
        if let Some(d) = e.digest {
            assert_eq!(tree.digest(), d.tree_digest, "digest after {:#x}", e.header.zxid);
        }
    }
    let later = read_snapshot(&read_in(MULTI_DIR, "snapshot.9"), options(), None).unwrap();
    assert!(later.tree == tree);
    assert_eq!(tree.get_children("/m").unwrap().0, ["c2", "s-0000000002"]);
}
