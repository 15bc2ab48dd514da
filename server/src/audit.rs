//! The audit log (`audit.enable=true`): one line per client write, in ZooKeeper's format.
//!
//! ZooKeeper's `AuditEvent`: `key=value` pairs separated by TABs, in the order `session`,
//! `user`, `ip`, `operation`, `znode`, `znode_type`, `acl`, `result`, absent values left out.
//! Which requests are audited and with what follows ZooKeeper's `AuditHelper`: creates
//! (`znode_type` the create mode in lower case), deletes, setData, setAcl (`acl` as
//! `ZKUtil.aclToString` writes it: `scheme:id:perms` entries with nothing between them), a
//! successful multi as one line per create, delete and setData in it, a failed multi as one
//! `multiOperation` failure, reconfig; `serverStart` and `serverStop` (`invoked`). A
//! successful create names the node created (with its sequence suffix), a failed one the path
//! asked for. Lines are logged only by the server the client is connected to.
//!
//! Where lines go: with `corral.audit.file=PATH`, appended to that file by a writer thread as
//! ZooKeeper's suggested logback pattern writes them (`%d{ISO8601} %p %c{2}: %m%n`, times in
//! UTC); otherwise to the server's log, under the target `audit`, at INFO (ERROR for failures),
//! as ZooKeeper's `Slf4jAuditLogger` does.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc;

use crate::proto::{Acl, CreateMode, Id, MultiOp, Request, Txn};

/// An audit line's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    /// The operation succeeded.
    Success,
    /// It failed.
    Failure,
    /// It was started (serverStop).
    Invoked,
}

impl AuditResult {
    fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
            AuditResult::Invoked => "invoked",
        }
    }
}

/// One audit line's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `0x` + the session id in hex.
    pub session: Option<String>,
    /// The users (`AuthUtil.getUsers`).
    pub user: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// `create`, `delete`, `setData`, `setAcl`, `multiOperation`, `reconfig`, `serverStart`,
    /// `serverStop`.
    pub operation: String,
    /// The node.
    pub znode: Option<String>,
    /// A create's mode.
    pub znode_type: Option<String>,
    /// A setAcl's ACL.
    pub acl: Option<String>,
    /// The result.
    pub result: AuditResult,
}

impl AuditEvent {
    /// The line, as ZooKeeper's `AuditEvent.toString()` writes it.
    pub fn line(&self) -> String {
        let mut parts = Vec::with_capacity(8);
        let fields = [
            ("session", &self.session),
            ("user", &self.user),
            ("ip", &self.ip),
            ("operation", &Some(self.operation.clone())),
            ("znode", &self.znode),
            ("znode_type", &self.znode_type),
            ("acl", &self.acl),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.push(format!("result={}", self.result.as_str()));
        parts.join("\t")
    }

    /// A closed or expired session's ephemeral node deleted (`success`) or already gone
    /// (`failure`): ZooKeeper's `ephemeralZNodeDeletionOnSessionCloseOrExpire`, by the
    /// server's user, logged by every server that applies the closeSession.
    pub fn ephemeral_deleted(user: &str, session: i64, path: &str, deleted: bool) -> AuditEvent {
        AuditEvent {
            session: Some(format!("0x{session:x}")),
            user: Some(user.to_string()),
            ip: None,
            operation: "ephemeralZNodeDeletionOnSessionCloseOrExpire".to_string(),
            znode: Some(path.to_string()),
            znode_type: None,
            acl: None,
            result: if deleted { AuditResult::Success } else { AuditResult::Failure },
        }
    }

    /// A server event (`serverStart`, `serverStop`): only the user, operation and result.
    pub fn server(user: &str, operation: &str, result: AuditResult) -> AuditEvent {
        AuditEvent {
            session: None,
            user: Some(user.to_string()),
            ip: None,
            operation: operation.to_string(),
            znode: None,
            znode_type: None,
            acl: None,
            result,
        }
    }
}

/// `CreateMode.toString().toLowerCase()`.
fn create_mode_name(flags: i32) -> Option<String> {
    let name = match CreateMode::from_code(flags)? {
        CreateMode::Persistent => "persistent",
        CreateMode::Ephemeral => "ephemeral",
        CreateMode::PersistentSequential => "persistent_sequential",
        CreateMode::EphemeralSequential => "ephemeral_sequential",
        CreateMode::Container => "container",
        CreateMode::PersistentWithTtl => "persistent_with_ttl",
        CreateMode::PersistentSequentialWithTtl => "persistent_sequential_with_ttl",
    };
    Some(name.to_string())
}

/// `ZKUtil.aclToString`.
pub fn acl_to_string(acl: &[Acl]) -> String {
    let mut out = String::new();
    for a in acl {
        out.push_str(&a.id.scheme);
        out.push(':');
        out.push_str(&a.id.id);
        out.push(':');
        for (bit, c) in [(4, 'c'), (8, 'd'), (1, 'r'), (2, 'w'), (16, 'a')] {
            if a.perms & bit != 0 {
                out.push(c);
            }
        }
    }
    out
}

/// Java's `String.hashCode`: over UTF-16 code units, `h = 31 * h + c`, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// How big a Java hash table is once it holds `len` keys.
#[derive(Debug, Clone, Copy)]
enum JavaTable {
    /// A `HashMap` (`HashSet`) keys were added to one by one: 16, doubled when a key would
    /// take it past three quarters full.
    HashMapGrown,
    /// A `HashMap` copied by `clone()`: the power of two at least `len / 0.75 + 1`.
    HashMapCloned,
    /// A `ConcurrentHashMap`: 16, doubled once it is three quarters full.
    Concurrent,
}

impl JavaTable {
    fn size(self, len: usize) -> usize {
        match self {
            JavaTable::HashMapGrown => {
                let mut n = 16;
                while len > n * 3 / 4 {
                    n *= 2;
                }
                n
            }
            JavaTable::HashMapCloned => {
                ((len as f32 / 0.75 + 1.0) as usize).max(1).next_power_of_two()
            }
            JavaTable::Concurrent => {
                let mut n = 16;
                while len >= n * 3 / 4 {
                    n *= 2;
                }
                n
            }
        }
    }
}

/// The order a Java hash table of `kind` iterates keys in: by bucket (`(h ^ h >>> 16) &
/// (n - 1)`), keys of one bucket in the order they went in (`items` is that order).
fn java_table_order<T>(kind: JavaTable, items: Vec<T>, hash: impl Fn(&T) -> i32) -> Vec<T> {
    let n = kind.size(items.len());
    let mut keyed: Vec<(usize, usize, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let h = hash(&t) as u32;
            ((((h ^ (h >> 16)) as usize) & (n - 1)), i, t)
        })
        .collect();
    keyed.sort_by_key(|(bucket, i, _)| (*bucket, *i));
    keyed.into_iter().map(|(_, _, t)| t).collect()
}

/// A session's ephemerals in ZooKeeper's order (its closeSession txn lists them so, and
/// deletes them so): the order of a clone of the `HashSet` they were added to one by one;
/// `paths` in the order they were created.
pub fn java_hash_set_order(paths: Vec<String>) -> Vec<String> {
    let hash = |p: &String| java_string_hash(p);
    let grown = java_table_order(JavaTable::HashMapGrown, paths, hash);
    java_table_order(JavaTable::HashMapCloned, grown, hash)
}

/// `AuthUtil.getUsers`: each id's user name (an ip id's address, a digest id's user, a sasl
/// or x509 id as is), empty ones left out, joined with commas; `None` if there are none. The
/// ids are taken in the order ZooKeeper's connection keeps them (a `ConcurrentHashMap` key
/// set, hashed by `Id.hashCode`), `auth` being the order they were added in.
pub fn users(auth: &[Id]) -> Option<String> {
    let id_hash = |id: &&Id| {
        let mut h: i32 = 17;
        h = h.wrapping_mul(37).wrapping_add(java_string_hash(&id.scheme));
        h.wrapping_mul(37).wrapping_add(java_string_hash(&id.id))
    };
    let ordered =
        java_table_order(JavaTable::Concurrent, auth.iter().collect::<Vec<&Id>>(), id_hash);
    let names: Vec<&str> = ordered
        .into_iter()
        .filter_map(|id| match id.scheme.as_str() {
            "digest" => id.id.split(':').next(),
            "ip" | "sasl" | "x509" => Some(id.id.as_str()),
            _ => None,
        })
        .filter(|n| !n.is_empty())
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// What an audited request needs to become its lines once its txn is known (kept with the
/// request while it is in flight; built only when auditing is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRequest {
    kind: Kind,
    /// The path asked for (a failed create, delete, setData, setAcl names it).
    path: Option<String>,
    create_mode: Option<String>,
    acl: Option<String>,
    /// A multi's creates: path asked for → mode (ZooKeeper looks a created node up by its
    /// actual path, so a sequential create's mode is not found and left out).
    multi_modes: Vec<(String, String)>,
    session: i64,
    user: Option<String>,
    ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Delete,
    SetData,
    SetAcl,
    Multi,
    Reconfig,
}

impl AuditRequest {
    /// The audit record of `req`, if it is an audited request.
    pub fn of(req: &Request, auth: &[Id], ip: IpAddr, session: i64) -> Option<AuditRequest> {
        let (kind, path, create_mode, acl) = match req {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
                (Kind::Create, Some(r.path.clone()), create_mode_name(r.flags), None)
            }
            Request::CreateTtl(r) => {
                (Kind::Create, Some(r.path.clone()), create_mode_name(r.flags), None)
            }
            Request::Delete(r) | Request::DeleteContainer(r) => {
                (Kind::Delete, Some(r.path.clone()), None, None)
            }
            Request::SetData(r) => (Kind::SetData, Some(r.path.clone()), None, None),
            Request::SetAcl(r) => {
                (Kind::SetAcl, Some(r.path.clone()), None, Some(acl_to_string(&r.acl)))
            }
            Request::Multi(_) => (Kind::Multi, None, None, None),
            Request::Reconfig(_) => (Kind::Reconfig, None, None, None),
            _ => return None,
        };
        let multi_modes = match req {
            Request::Multi(ops) => ops
                .iter()
                .filter_map(|op| match op {
                    MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => {
                        Some((r.path.clone(), create_mode_name(r.flags)?))
                    }
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(AuditRequest {
            kind,
            path,
            create_mode,
            acl,
            multi_modes,
            session,
            user: users(auth),
            ip: ip.to_string(),
        })
    }

    fn event(
        &self,
        op: &str,
        znode: Option<String>,
        mode: Option<String>,
        acl: Option<String>,
        result: AuditResult,
    ) -> AuditEvent {
        AuditEvent {
            session: Some(format!("0x{:x}", self.session as u64)),
            user: self.user.clone(),
            ip: Some(self.ip.clone()),
            operation: op.to_string(),
            znode,
            znode_type: mode,
            acl,
            result,
        }
    }

    /// The lines for this request, now that its txn `txn` was applied with result `err`.
    pub fn events(&self, txn: &Txn, err: i32) -> Vec<AuditEvent> {
        let failed_txn = matches!(txn, Txn::Error(_));
        let result =
            if failed_txn || err != 0 { AuditResult::Failure } else { AuditResult::Success };
        // A successful txn names its node (a sequential create's actual path); a failed one,
        // the path asked for.
        let txn_path = match txn {
            Txn::Create(t) | Txn::Create2(t) => Some(t.path.clone()),
            Txn::CreateTtl(t) => Some(t.path.clone()),
            Txn::CreateContainer(t) => Some(t.path.clone()),
            Txn::Delete(t) | Txn::DeleteContainer(t) => Some(t.path.clone()),
            Txn::SetData(t) | Txn::Reconfig(t) => Some(t.path.clone()),
            Txn::SetAcl(t) => Some(t.path.clone()),
            _ => None,
        };
        let path = if failed_txn { self.path.clone() } else { txn_path };
        match self.kind {
            Kind::Create => {
                vec![self.event("create", path, self.create_mode.clone(), None, result)]
            }
            Kind::Delete => vec![self.event("delete", path, None, None, result)],
            Kind::SetData => vec![self.event("setData", path, None, None, result)],
            Kind::SetAcl => vec![self.event("setAcl", path, None, self.acl.clone(), result)],
            Kind::Reconfig => vec![self.event("reconfig", path, None, None, result)],
            Kind::Multi => {
                let Txn::Multi(subs) = txn else {
                    return vec![self.event(
                        "multiOperation",
                        None,
                        None,
                        None,
                        AuditResult::Failure,
                    )];
                };
                let mut out = Vec::new();
                let mut failed = false;
                for sub in subs {
                    let ok = AuditResult::Success;
                    match sub {
                        Txn::Create(t) | Txn::Create2(t) => out.push(self.event(
                            "create",
                            Some(t.path.clone()),
                            self.mode_of(&t.path),
                            None,
                            ok,
                        )),
                        Txn::CreateTtl(t) => out.push(self.event(
                            "create",
                            Some(t.path.clone()),
                            self.mode_of(&t.path),
                            None,
                            ok,
                        )),
                        Txn::CreateContainer(t) => out.push(self.event(
                            "create",
                            Some(t.path.clone()),
                            self.mode_of(&t.path),
                            None,
                            ok,
                        )),
                        Txn::Delete(t) | Txn::DeleteContainer(t) => {
                            out.push(self.event("delete", Some(t.path.clone()), None, None, ok))
                        }
                        Txn::SetData(t) => {
                            out.push(self.event("setData", Some(t.path.clone()), None, None, ok))
                        }
                        Txn::Error(_) => failed = true,
                        _ => {}
                    }
                }
                if failed {
                    // ZooKeeper: a failed multi's sub-results are all errors; one line.
                    out.retain(|_| false);
                    out.push(self.event("multiOperation", None, None, None, AuditResult::Failure));
                }
                out
            }
        }
    }

    fn mode_of(&self, path: &str) -> Option<String> {
        self.multi_modes.iter().find(|(p, _)| p == path).map(|(_, m)| m.clone())
    }
}

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    /// The file writer's queue and thread (joined on drop, so that every line is written).
    file: Option<(mpsc::SyncSender<Stamped>, std::thread::JoinHandle<()>)>,
    /// The user the server runs as (ZooKeeper's `user.name`): the user of its own events.
    pub server_user: String,
}

/// The user this process runs as: `$USER`, `$LOGNAME`, else the uid.
pub fn process_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|_| unsafe { libc::getuid() }.to_string())
}

/// An event and when it happened (ms since the epoch).
type Stamped = (i64, AuditEvent);

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Some((tx, writer)) = self.file.take() {
            drop(tx);
            let _ = writer.join();
        }
    }
}

impl AuditLog {
    /// Lines to the server's log.
    pub fn to_log() -> AuditLog {
        AuditLog { file: None, server_user: process_user() }
    }

    /// Lines appended to `path` by a writer thread (created if missing).
    pub fn to_file(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        // Room for bursts; a disk that cannot keep up slows the writers rather than losing
        // lines.
        let (tx, rx) = mpsc::sync_channel::<Stamped>(65_536);
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new().name("corral-audit".into()).spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(first) = rx.recv() {
                let mut next = Some(first);
                while let Some((ms, e)) = next.take() {
                    let level = if e.result == AuditResult::Failure { "ERROR" } else { "INFO" };
                    let line = format!(
                        "{} {level} audit.Slf4jAuditLogger: {}\n",
                        crate::admin::javafmt::iso8601_utc(ms),
                        e.line()
                    );
                    if let Err(err) = out.write_all(line.as_bytes()) {
                        tracing::error!(file = %shown, error = %err, "writing the audit log");
                    }
                    next = rx.try_recv().ok();
                }
                if let Err(err) = out.flush() {
                    tracing::error!(file = %shown, error = %err, "writing the audit log");
                }
            }
        })?;
        Ok(AuditLog { file: Some((tx, writer)), server_user: process_user() })
    }

    /// Records one event.
    pub fn log(&self, e: AuditEvent) {
        match &self.file {
            Some((tx, _)) => {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let _ = tx.send((ms, e));
            }
            None if e.result == AuditResult::Failure => {
                tracing::error!(target: "audit", "{}", e.line())
            }
            None => tracing::info!(target: "audit", "{}", e.line()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CreateRequest, DeleteTxn, ErrorTxn, SetAclRequest};

    fn id(scheme: &str, id: &str) -> Id {
        Id { scheme: scheme.into(), id: id.into() }
    }

    #[test]
    fn lines_have_zookeepers_fields_in_order() {
        let e = AuditEvent {
            session: Some("0x19344730000".into()),
            user: Some("192.168.1.2,zkcli@HADOOP.COM".into()),
            ip: Some("192.168.1.2".into()),
            operation: "create".into(),
            znode: Some("/a".into()),
            znode_type: Some("persistent".into()),
            acl: None,
            result: AuditResult::Success,
        };
        // ZooKeeper's documented example.
        assert_eq!(
            e.line(),
            "session=0x19344730000\tuser=192.168.1.2,zkcli@HADOOP.COM\tip=192.168.1.2\t\
             operation=create\tznode=/a\tznode_type=persistent\tresult=success"
        );
        assert_eq!(
            AuditEvent::server("zookeeper", "serverStop", AuditResult::Invoked).line(),
            "user=zookeeper\toperation=serverStop\tresult=invoked"
        );
    }

    #[test]
    fn users_and_acls_as_zookeeper_writes_them() {
        // The orders a JVM (OpenJDK 17, ZooKeeper 3.8.0's Id) iterates these sets in.
        assert_eq!(java_string_hash("hello"), 99162322);
        let auth = [id("ip", "127.0.0.1"), id("digest", "bob:ikIaKsbtGweaHnb/jKn7OHqbunM=")];
        assert_eq!(users(&auth).as_deref(), Some("bob,127.0.0.1"), "as ZooKeeper 3.8 logged it");
        let auth = [
            id("ip", "10.0.0.1"),
            id("digest", "bob:xyz="),
            id("sasl", "zk@EXAMPLE.COM"),
            id("x509", "CN=client"),
            id("super", ""),
        ];
        assert_eq!(users(&auth).as_deref(), Some("CN=client,bob,10.0.0.1,zk@EXAMPLE.COM"));
        assert_eq!(users(&[]), None);
        let acl = vec![
            Acl { perms: 31, id: id("world", "anyone") },
            Acl { perms: 1 | 2, id: id("digest", "bob:xyz=") },
        ];
        assert_eq!(acl_to_string(&acl), "world:anyone:cdrwadigest:bob:xyz=:rw");
    }

    #[test]
    fn ephemerals_in_the_order_zookeeper_deletes_them() {
        let order = |paths: &[&str]| {
            java_hash_set_order(paths.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        };
        // What a JVM printed for a clone of a HashSet the paths were added to in this order.
        assert_eq!(
            order(&["/audit/eph", "/audit/eseq-0000000002"]),
            ["/audit/eph", "/audit/eseq-0000000002"]
        );
        assert_eq!(order(&["/b", "/a", "/zz/top", "/q"]), ["/a", "/q", "/b", "/zz/top"]);
        assert_eq!(
            order(&[
                "/locks/lock-0000000003",
                "/locks/lock-0000000001",
                "/svc/member-a",
                "/svc/member-b",
                "/e"
            ]),
            [
                "/locks/lock-0000000003",
                "/locks/lock-0000000001",
                "/svc/member-b",
                "/svc/member-a",
                "/e"
            ]
        );
        let mut many: Vec<String> = (0..20).map(|i| format!("/app/e-{i:010}")).collect();
        many.extend(["/audit/eph", "/audit/eseq-0000000002", "/x", "/lock/n"].map(String::from));
        let jvm = "/app/e-0000000010 /app/e-0000000011 /app/e-0000000012 /audit/eseq-0000000002 \
                   /app/e-0000000013 /app/e-0000000018 /app/e-0000000019 /app/e-0000000014 \
                   /app/e-0000000015 /app/e-0000000016 /app/e-0000000017 /lock/n /x \
                   /app/e-0000000000 /app/e-0000000001 /audit/eph /app/e-0000000002 \
                   /app/e-0000000007 /app/e-0000000008 /app/e-0000000009 /app/e-0000000003 \
                   /app/e-0000000004 /app/e-0000000005 /app/e-0000000006";
        assert_eq!(java_hash_set_order(many), jvm.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn a_request_becomes_its_lines() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let auth = [id("ip", "127.0.0.1")];
        let create = Request::Create(CreateRequest {
            path: "/q/n-".into(),
            data: Default::default(),
            acl: Vec::new(),
            flags: 2,
        });
        let a = AuditRequest::of(&create, &auth, ip, 0x1234).unwrap();
        let done = Txn::Create(crate::proto::CreateTxn {
            path: "/q/n-0000000007".into(),
            data: Default::default(),
            acl: Vec::new(),
            ephemeral: false,
            parent_c_version: 1,
        });
        let lines: Vec<String> = a.events(&done, 0).iter().map(AuditEvent::line).collect();
        assert_eq!(
            lines,
            ["session=0x1234\tuser=127.0.0.1\tip=127.0.0.1\toperation=create\t\
              znode=/q/n-0000000007\tznode_type=persistent_sequential\tresult=success"]
        );
        // A failed create names the path asked for.
        let failed = a.events(&Txn::Error(ErrorTxn { err: -110 }), -110);
        assert_eq!(failed[0].znode.as_deref(), Some("/q/n-"));
        assert_eq!(failed[0].result, AuditResult::Failure);
        // Reads are not audited.
        let read =
            Request::GetData(crate::proto::PathWatchRequest { path: "/".into(), watch: false });
        assert!(AuditRequest::of(&read, &auth, ip, 1).is_none());
        // setAcl carries the ACL.
        let set = Request::SetAcl(SetAclRequest {
            path: "/a".into(),
            acl: vec![Acl { perms: 1, id: id("world", "anyone") }],
            version: -1,
        });
        let a = AuditRequest::of(&set, &auth, ip, 1).unwrap();
        let e = &a.events(&Txn::Error(ErrorTxn { err: -101 }), -101)[0];
        assert_eq!((e.acl.as_deref(), e.result), (Some("world:anyone:r"), AuditResult::Failure));
    }

    #[test]
    fn a_multi_is_a_line_per_write_or_one_failure() {
        let ip: IpAddr = "::1".parse().unwrap();
        let multi = Request::Multi(vec![
            MultiOp::Create(CreateRequest {
                path: "/m".into(),
                data: Default::default(),
                acl: Vec::new(),
                flags: 1,
            }),
            MultiOp::Delete(crate::proto::DeleteRequest { path: "/d".into(), version: -1 }),
        ]);
        let a = AuditRequest::of(&multi, &[], ip, 2).unwrap();
        let ok = Txn::Multi(vec![
            Txn::Create(crate::proto::CreateTxn {
                path: "/m".into(),
                data: Default::default(),
                acl: Vec::new(),
                ephemeral: true,
                parent_c_version: 1,
            }),
            Txn::Delete(DeleteTxn { path: "/d".into() }),
        ]);
        let lines: Vec<String> = a.events(&ok, 0).iter().map(AuditEvent::line).collect();
        assert_eq!(
            lines,
            [
                "session=0x2\tip=::1\toperation=create\tznode=/m\tznode_type=ephemeral\tresult=success",
                "session=0x2\tip=::1\toperation=delete\tznode=/d\tresult=success",
            ]
        );
        let bad =
            Txn::Multi(vec![Txn::Error(ErrorTxn { err: 0 }), Txn::Error(ErrorTxn { err: -101 })]);
        let lines: Vec<String> = a.events(&bad, -101).iter().map(AuditEvent::line).collect();
        assert_eq!(lines, ["session=0x2\tip=::1\toperation=multiOperation\tresult=failure"]);
    }

    #[test]
    fn a_file_gets_logbacks_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::to_file(&path).unwrap();
        log.log(AuditEvent::server("corral", "serverStart", AuditResult::Success));
        log.log(AuditEvent::server("corral", "serverStart", AuditResult::Failure));
        drop(log);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let text = loop {
            let t = std::fs::read_to_string(&path).unwrap_or_default();
            if t.lines().count() == 2 || std::time::Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // 2026-12-06 23:04:09,123 INFO audit.Slf4jAuditLogger: user=...
        let (stamp, rest) = lines[0].split_at(23);
        assert_eq!(stamp.len(), 23);
        assert_eq!(&stamp[4..5], "-");
        assert_eq!(&stamp[19..20], ",");
        assert_eq!(
            rest,
            " INFO audit.Slf4jAuditLogger: user=corral\toperation=serverStart\tresult=success"
        );
        assert!(lines[1].contains(" ERROR audit.Slf4jAuditLogger: "));
    }
}
