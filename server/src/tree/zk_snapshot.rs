//! Apache ZooKeeper's snapshot format (reference §13), so Corral can load a ZooKeeper data
//! directory and write files ZooKeeper can load, and stream SNAP syncs.
//!
//! File: FileHeader{"ZKSN", 2, -1}; body = sessions (count, then id + timeout each), the ACL
//! cache (count, then id + ACL vector each), the nodes in pre-order (path + DataNode{data,
//! aclId, StatPersisted}, the root as ""), and the end marker "/"; then a seal (Adler32 of every
//! byte so far, as a long, followed by "/"); then ZxidDigest{zxid, 2, digest} and another seal;
//! optionally (3.9+) the last processed zxid and a third seal. Compressed snapshots (.gz,
//! .snappy) are not handled here.
//!
//! Writing goes to any `io::Write` the caller opens; this module opens no files.

use std::io::Write;

use adler2::Adler32;

use crate::proto::{
    Acl, FileHeader, Jute, JuteError, JuteWrite, Reader, StatPersisted, ZxidDigest, DEFAULT_MAX_LEN,
};

use super::digest::DIGEST_VERSION;
use super::snapshot::{SnapshotError, TreeBuilder};
use super::{DataTree, TreeOptions};

/// "ZKSN".
pub const SNAPSHOT_MAGIC: i32 = 0x5A4B_534E;
/// The snapshot file format version.
pub const SNAPSHOT_VERSION: i32 = 2;
/// A session as snapshots store it: (session id, timeout in ms).
pub type SessionEntry = (i64, i32);

/// What to write after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Write the ZxidDigest section (ZooKeeper 3.6+ default).
    pub digest: bool,
    /// Write the last processed zxid section (ZooKeeper 3.9+).
    pub last_processed_zxid: bool,
}

impl Default for Trailer {
    fn default() -> Self {
        Trailer { digest: true, last_processed_zxid: false }
    }
}

/// A loaded snapshot.
#[derive(Debug)]
pub struct ZkSnapshot {
    pub sessions: Vec<SessionEntry>,
    pub tree: DataTree,
    pub zxid_digest: Option<ZxidDigest>,
    pub last_processed_zxid: Option<i64>,
}

/// Counts an Adler32 over everything written, as ZooKeeper's CheckedOutputStream does.
struct Sealed<W: Write> {
    inner: W,
    adler: Adler32,
    buf: Vec<u8>,
}

impl<W: Write> Sealed<W> {
    fn put(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
        self.buf.clear();
        f(&mut self.buf);
        self.adler.write_slice(&self.buf);
        self.inner.write_all(&self.buf)
    }

    fn seal(&mut self) -> std::io::Result<()> {
        let sum = i64::from(self.adler.checksum());
        self.put(|b| {
            sum.write(b);
            b.put_ustring("/");
        })
    }
}

fn write_body_to<W: Write>(
    out: &mut Sealed<W>,
    tree: &DataTree,
    sessions: &[SessionEntry],
) -> std::io::Result<()> {
    out.put(|b| b.put_len(sessions.len()))?;
    for (id, timeout) in sessions {
        out.put(|b| {
            id.write(b);
            timeout.write(b);
        })?;
    }
    out.put(|b| b.put_len(tree.snapshot_acls().count()))?;
    for (id, acl) in tree.snapshot_acls() {
        out.put(|b| {
            id.write(b);
            b.put_len(acl.len());
            for a in acl {
                a.write(b);
            }
        })?;
    }
    for rec in tree.snapshot_nodes() {
        let path = if rec.path == "/" { "" } else { rec.path };
        out.put(|b| {
            b.put_ustring(path);
            b.put_buffer(rec.data);
            rec.acl.write(b);
            rec.stat.write(b);
        })?;
    }
    out.put(|b| b.put_ustring("/"))
}

/// Write the sessions + DataTree body alone (the SNAP sync payload, before "BenWasHere").
pub fn write_body<W: Write>(
    w: W,
    tree: &DataTree,
    sessions: &[SessionEntry],
) -> Result<(), SnapshotError> {
    let mut out = Sealed { inner: w, adler: Adler32::new(), buf: Vec::new() };
    write_body_to(&mut out, tree, sessions)?;
    Ok(())
}

/// Write a complete snapshot file.
pub fn write_snapshot<W: Write>(
    w: W,
    tree: &DataTree,
    sessions: &[SessionEntry],
    trailer: Trailer,
) -> Result<(), SnapshotError> {
    let mut out = Sealed { inner: w, adler: Adler32::new(), buf: Vec::new() };
    out.put(|b| {
        FileHeader { magic: SNAPSHOT_MAGIC, version: SNAPSHOT_VERSION, dbid: -1 }.write(b)
    })?;
    write_body_to(&mut out, tree, sessions)?;
    out.seal()?;
    if trailer.digest {
        let zd = ZxidDigest {
            zxid: tree.last_processed_zxid(),
            digest_version: DIGEST_VERSION,
            digest: tree.digest(),
        };
        out.put(|b| zd.write(b))?;
        out.seal()?;
    }
    if trailer.last_processed_zxid {
        let zxid = tree.last_processed_zxid();
        out.put(|b| zxid.write(b))?;
        out.seal()?;
    }
    out.inner.flush()?;
    Ok(())
}

/// Read the sessions + DataTree body from `r`.
pub fn read_body(
    r: &mut Reader<'_>,
    options: TreeOptions,
) -> Result<(Vec<SessionEntry>, TreeBuilder), SnapshotError> {
    let mut p = BodyParser::new(options, r.max_len());
    let rest = r.rest();
    let used = p.feed(rest)?;
    if !p.is_done() {
        // The body goes on past the input: fail as a read past its end does.
        let at = r.position() + used;
        return Err(JuteError::Truncated { offset: at, needed: 1, available: 0 }.into());
    }
    r.skip(used)?;
    Ok(p.into_parts())
}

/// Where a [`BodyParser`] is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyStage {
    SessionCount,
    Sessions(u32),
    AclCount,
    Acls(u32),
    Nodes,
    Done,
}

/// Reads a snapshot body (sessions, ACL cache, nodes, end marker) as it arrives, in pieces of
/// any size: each call to [`BodyParser::feed`] takes the whole records at the start of what it
/// is given and says how many bytes they were; the caller keeps the rest and offers it again
/// with more bytes after it. Nodes go into a [`TreeBuilder`] as they are read, so nothing but
/// the tree being built and one unfinished record is held.
#[derive(Debug)]
pub struct BodyParser {
    stage: BodyStage,
    sessions: Vec<SessionEntry>,
    builder: TreeBuilder,
    max_len: usize,
    /// Bytes taken so far.
    taken: u64,
}

impl BodyParser {
    /// A parser refusing any field longer than `max_len`.
    pub fn new(options: TreeOptions, max_len: usize) -> BodyParser {
        BodyParser {
            stage: BodyStage::SessionCount,
            sessions: Vec::new(),
            builder: TreeBuilder::new(options),
            max_len,
            taken: 0,
        }
    }

    /// The end marker has been read.
    pub fn is_done(&self) -> bool {
        self.stage == BodyStage::Done
    }

    /// Body bytes taken so far.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Takes the whole records at the start of `buf` (none past the end marker) and returns
    /// how many bytes they were. An error is a malformed body (offsets in it count from the
    /// start of `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, SnapshotError> {
        let mut r = Reader::with_max_len(buf, self.max_len);
        let mut used = 0;
        while self.stage != BodyStage::Done {
            match self.record(&mut r) {
                Ok(()) => used = r.position(),
                Err(SnapshotError::Jute(JuteError::Truncated { .. })) => break,
                Err(e) => return Err(e),
            }
        }
        self.taken += used as u64;
        Ok(used)
    }

    /// Reads one record; on an error the stage is unchanged (a truncated record is read again
    /// whole with more bytes).
    fn record<'a>(&mut self, r: &mut Reader<'a>) -> Result<(), SnapshotError> {
        match self.stage {
            BodyStage::SessionCount => {
                self.stage = BodyStage::Sessions(r.read_i32()?.max(0) as u32);
            }
            BodyStage::Sessions(0) => self.stage = BodyStage::AclCount,
            BodyStage::Sessions(n) => {
                let (id, timeout) = (r.read_i64()?, r.read_i32()?);
                self.sessions.push((id, timeout));
                self.stage = BodyStage::Sessions(n - 1);
            }
            BodyStage::AclCount => self.stage = BodyStage::Acls(r.read_i32()?.max(0) as u32),
            BodyStage::Acls(0) => self.stage = BodyStage::Nodes,
            BodyStage::Acls(n) => {
                let id = r.read_i64()?;
                let acl = Vec::<Acl>::read(r)?;
                self.builder.add_acl(id, acl)?;
                self.stage = BodyStage::Acls(n - 1);
            }
            BodyStage::Nodes => {
                // Path and data are borrowed from the input: the node copies them into its
                // own allocation, so nothing else is allocated per node.
                let at = r.position();
                let path = r.read_buffer_ref()?.unwrap_or_default();
                let path =
                    std::str::from_utf8(path).map_err(|_| JuteError::InvalidUtf8 { offset: at })?;
                if path == "/" {
                    self.stage = BodyStage::Done;
                    return Ok(());
                }
                let data = r.read_buffer_ref()?;
                let acl = r.read_i64()?;
                let stat = StatPersisted::read(r)?;
                self.builder.add_node(path, data, acl, stat)?;
            }
            BodyStage::Done => {}
        }
        Ok(())
    }

    /// The sessions and the tree read.
    pub fn into_parts(self) -> (Vec<SessionEntry>, TreeBuilder) {
        (self.sessions, self.builder)
    }
}

fn check_seal(r: &mut Reader<'_>, bytes: &[u8]) -> Result<(), SnapshotError> {
    let offset = r.position();
    let mut adler = Adler32::new();
    adler.write_slice(&bytes[..offset]);
    let computed = i64::from(adler.checksum());
    let stored = r.read_i64()?;
    if stored != computed {
        return Err(SnapshotError::BadChecksum { offset, stored, computed });
    }
    let marker_at = r.position();
    if r.read_ustring()? != "/" {
        return Err(SnapshotError::MissingMarker { offset: marker_at });
    }
    Ok(())
}

/// Read a complete snapshot file from memory. `max_len` bounds each field (jute.maxbuffer plus
/// its server-side extra, by default twice the default maxbuffer).
pub fn read_snapshot(
    bytes: &[u8],
    options: TreeOptions,
    max_len: Option<usize>,
) -> Result<ZkSnapshot, SnapshotError> {
    let r = &mut Reader::with_max_len(bytes, max_len.unwrap_or(2 * DEFAULT_MAX_LEN));
    let header = FileHeader::read(r)?;
    if header.magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic(header.magic));
    }
    if header.version != SNAPSHOT_VERSION {
        return Err(SnapshotError::BadVersion(header.version));
    }
    let (sessions, builder) = read_body(r, options)?;
    check_seal(r, bytes)?;
    let mut zxid_digest = None;
    let mut last_processed_zxid = None;
    if r.remaining() >= 20 {
        zxid_digest = Some(ZxidDigest::read(r)?);
        check_seal(r, bytes)?;
    }
    if r.remaining() >= 8 {
        last_processed_zxid = Some(r.read_i64()?);
        check_seal(r, bytes)?;
    }
    let zxid = last_processed_zxid.or(zxid_digest.as_ref().map(|d| d.zxid)).unwrap_or(0);
    let tree = builder.finish(zxid)?;
    Ok(ZkSnapshot { sessions, tree, zxid_digest, last_processed_zxid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, Data, Request};
    use crate::proto::{CreateRequest, TxnHeader};
    use crate::tree::prepare::{prepare, PrepareConfig, SessionContext};

    fn fresh_bytes(tree: &DataTree, trailer: Trailer) -> Vec<u8> {
        let mut out = Vec::new();
        write_snapshot(&mut out, tree, &[], trailer).unwrap();
        out
    }

    #[test]
    fn fresh_tree_matches_zookeeper_layout() {
        let tree = DataTree::default();
        // Live 3.8.0: a fresh standalone server's snapshot.0 is 457 bytes (the digest section
        // there holds zero digest; ours holds the real one, same size).
        let bytes = fresh_bytes(&tree, Trailer::default());
        assert_eq!(bytes.len(), 457);
        assert_eq!(&bytes[bytes.len() - 5..], &[0, 0, 0, 1, b'/']);
        let snap = read_snapshot(&bytes, TreeOptions::default(), None).unwrap();
        assert_eq!(snap.tree, tree);
        assert_eq!(snap.tree.digest(), tree.digest());
        assert_eq!(snap.tree.acl_cache().len(), 1);
    }

    #[test]
    fn round_trip_with_nodes_sessions_and_trailers() {
        let mut tree = DataTree::default();
        let auth = [];
        let ctx = SessionContext { session_id: 7, auth: &auth, local_session: false };
        for (i, (path, flags)) in
            [("/a", 0), ("/a/e", 1), ("/c", 4), ("/a/s", 2)].iter().enumerate()
        {
            let body = CreateRequest {
                path: (*path).into(),
                data: Data::from(format!("d{i}").as_str()),
                acl: Acl::open_unsafe(),
                flags: *flags,
            };
            // Containers need their own opcode: create (1) with flags 4 makes a plain node.
            let req =
                if *flags == 4 { Request::CreateContainer(body) } else { Request::Create(body) };
            let zxid = i as i64 + 1;
            let txn = prepare(&tree, &ctx, &PrepareConfig::default(), &req, zxid, 100).unwrap();
            let hdr = TxnHeader { client_id: 7, cxid: 1, zxid, time: 100, op: txn.opcode().code() };
            assert_eq!(tree.apply(&hdr, &txn).result.err, 0);
        }
        let trailer = Trailer { digest: true, last_processed_zxid: true };
        let mut bytes = Vec::new();
        write_snapshot(&mut bytes, &tree, &[(7, 30_000)], trailer).unwrap();
        let snap = read_snapshot(&bytes, TreeOptions::default(), None).unwrap();
        assert_eq!(snap.sessions, vec![(7, 30_000)]);
        assert_eq!(snap.tree, tree);
        assert_eq!(snap.last_processed_zxid, Some(4));
        assert_eq!(snap.zxid_digest.unwrap().digest, tree.digest());
        assert_eq!(snap.tree.ephemerals(7), vec!["/a/e".to_owned()]);
        assert_eq!(snap.tree.containers(), vec!["/c".to_owned()]);
        assert_eq!(snap.tree.get_children("/a").unwrap().1.num_children, 2);

        // Any flipped byte is caught by a seal or a structural check; no panics.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(read_snapshot(&bad, TreeOptions::default(), None).is_err(), "byte {i}");
        }
        for cut in 0..bytes.len() {
            let _ = read_snapshot(&bytes[..cut], TreeOptions::default(), None);
        }
    }
}
