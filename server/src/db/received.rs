//! A SNAP payload as a learner receives it: the snapshot body is read as it arrives, record by
//! record, its nodes going straight into the tree being built, and its bytes (when a
//! snapshot store is given) straight into an unfinished snapshot file. Nothing holds the
//! payload whole: at the end there is the tree, and a file that [`super::Database`] makes the
//! newest snapshot when it installs it (no second write, no second parse).
//!
//! The network reader feeds it what the socket delivers; the simulator feeds it the payload
//! it carries in one piece. Both hand the result, a [`ReceivedSnapshot`], to the replica.

use std::io::Write;
use std::sync::{Arc, Mutex};

use corral_engine::snapshot::{SnapshotStore, SnapshotWriter};

use super::State;
use crate::proto::{JuteError, Reader, DEFAULT_MAX_LEN};
use crate::tree::snapshot::SnapshotError;
use crate::tree::zk_snapshot::BodyParser;
use crate::tree::TreeOptions;
use crate::zab::wire::SNAP_SIGNATURE;
use crate::zxid::Zxid;

/// Why a SNAP payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The body is malformed (offsets count from the start of the piece it was in).
    #[error("bad SNAP payload after {taken} bytes: {source}")]
    Malformed { taken: u64, source: SnapshotError },
    /// Over the limit on a SNAP payload's size.
    #[error("SNAP payload over {max} bytes")]
    TooLarge { max: u64 },
    /// The body is not followed by the signature.
    #[error("the SNAP payload does not end with the signature")]
    Signature,
    /// Writing it to the snapshot directory failed.
    #[error("spooling the SNAP payload to {what}: {message}")]
    Spool { what: String, message: String },
}

/// Reads one SNAP payload (the body, then the signature) from pieces of any size.
pub struct SnapReceiver {
    zxid: Zxid,
    body: BodyParser,
    spool: Option<SnapshotWriter>,
    bytes_max: u64,
    signed: bool,
}

impl std::fmt::Debug for SnapReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapReceiver")
            .field("zxid", &self.zxid)
            .field("taken", &self.body.taken())
            .field("spooled", &self.spool.is_some())
            .finish()
    }
}

impl SnapReceiver {
    /// A receiver for the payload of a SNAP at `zxid`: fields longer than `field_max` and
    /// bodies longer than `bytes_max` are refused; with `spool`, the body is written to a new
    /// snapshot file of that store as it arrives.
    pub fn new(
        zxid: Zxid,
        tree: TreeOptions,
        field_max: usize,
        bytes_max: usize,
        spool: Option<&SnapshotStore>,
    ) -> Result<SnapReceiver, ReceiveError> {
        let spool = match spool {
            None => None,
            Some(store) => Some(store.create(zxid.get()).map_err(|e| ReceiveError::Spool {
                what: store.dir().display().to_string(),
                message: e.to_string(),
            })?),
        };
        Ok(SnapReceiver {
            zxid,
            body: BodyParser::new(tree, field_max),
            spool,
            bytes_max: bytes_max as u64,
            signed: false,
        })
    }

    /// Takes the whole records at the start of `buf` and returns how many bytes they were; the
    /// caller offers the rest again with more after it. Nothing past the signature is taken.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ReceiveError> {
        let mut used = 0;
        if !self.body.is_done() {
            let before = self.body.taken();
            used = self
                .body
                .feed(buf)
                .map_err(|source| ReceiveError::Malformed { taken: before, source })?;
            if self.body.taken() > self.bytes_max {
                return Err(ReceiveError::TooLarge { max: self.bytes_max });
            }
            if let Some(w) = &mut self.spool {
                w.write_all(&buf[..used]).map_err(|e| ReceiveError::Spool {
                    what: format!("{w:?}"),
                    message: e.to_string(),
                })?;
            }
        }
        if self.body.is_done() && !self.signed {
            let r = &mut Reader::with_max_len(&buf[used..], DEFAULT_MAX_LEN);
            match r.read_ustring() {
                Ok(s) if s == SNAP_SIGNATURE => {
                    self.signed = true;
                    used += r.position();
                }
                Err(JuteError::Truncated { .. }) => {}
                Ok(_) | Err(_) => return Err(ReceiveError::Signature),
            }
        }
        Ok(used)
    }

    /// The whole payload, signature included, has been taken.
    pub fn is_complete(&self) -> bool {
        self.signed
    }

    /// Body bytes taken so far.
    pub fn taken(&self) -> u64 {
        self.body.taken()
    }

    /// The state the payload holds, and its file made durable (not yet visible).
    pub fn finish(self) -> Result<ReceivedSnapshot, ReceiveError> {
        if !self.signed {
            return Err(ReceiveError::Signature);
        }
        let bytes = self.body.taken();
        let (sessions, builder) = self.body.into_parts();
        let tree = builder
            .finish(self.zxid.get() as i64)
            .map_err(|source| ReceiveError::Malformed { taken: bytes, source })?;
        let mut spool = self.spool;
        if let Some(w) = &mut spool {
            w.sync().map_err(|e| ReceiveError::Spool {
                what: format!("{w:?}"),
                message: e.to_string(),
            })?;
        }
        let state = State { tree, sessions: sessions.into_iter().collect(), digest_mismatches: 0 };
        Ok(ReceivedSnapshot {
            zxid: self.zxid,
            bytes,
            inner: Arc::new(Mutex::new(Some(Received { state, spool }))),
        })
    }

    /// Reads a whole payload held in memory (the simulator's way).
    pub fn read_whole(
        zxid: Zxid,
        payload: &[u8],
        tree: TreeOptions,
        field_max: usize,
    ) -> Result<ReceivedSnapshot, ReceiveError> {
        let mut r = SnapReceiver::new(zxid, tree, field_max, usize::MAX, None)?;
        let used = r.feed(payload)?;
        if !r.is_complete() || used != payload.len() {
            return Err(ReceiveError::Signature);
        }
        r.finish()
    }
}

/// What a received snapshot holds until it is installed.
pub struct Received {
    /// The state.
    pub state: State,
    /// Its body in an unfinished snapshot file, synced (`None`: not spooled; the state is
    /// written out when installed).
    pub spool: Option<SnapshotWriter>,
}

/// A SNAP payload received whole, ready to install: passed by value through events and
/// commands (clones share it; the first [`ReceivedSnapshot::take`] gets it).
#[derive(Clone)]
pub struct ReceivedSnapshot {
    zxid: Zxid,
    bytes: u64,
    inner: Arc<Mutex<Option<Received>>>,
}

impl ReceivedSnapshot {
    /// The zxid it was taken at.
    pub fn zxid(&self) -> Zxid {
        self.zxid
    }

    /// Its body's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The state and its file; `None` once taken.
    pub fn take(&self) -> Option<Received> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for ReceivedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceivedSnapshot({:#x}, {} bytes)", self.zxid.get(), self.bytes)
    }
}

impl PartialEq for ReceivedSnapshot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for ReceivedSnapshot {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, Data, Request};
    use crate::proto::{CreateRequest, TxnHeader};
    use crate::tree::prepare::{prepare, PrepareConfig, SessionContext};
    use crate::tree::DataTree;
    use bytes::BytesMut;
    use rand::{Rng, SeedableRng};

    fn sample_state(nodes: usize) -> State {
        let mut tree = DataTree::default();
        let auth = [];
        let ctx = SessionContext { session_id: 7, auth: &auth, local_session: false };
        for i in 0..nodes {
            let path = if i % 3 == 0 { format!("/n{i}") } else { format!("/n{}/c{i}", i - i % 3) };
            let req = Request::Create(CreateRequest {
                path,
                data: Data::from(vec![i as u8; i % 50].as_slice()),
                // Parents (every third) open; their children of two ACLs, some ephemeral.
                acl: if i % 3 == 0 || i % 2 == 0 { Acl::open_unsafe() } else { Acl::read_unsafe() },
                flags: if i % 3 != 0 && i % 7 == 1 { 1 } else { 0 },
            });
            let zxid = i as i64 + 1;
            let txn = prepare(&tree, &ctx, &PrepareConfig::default(), &req, zxid, 100).unwrap();
            let hdr = TxnHeader { client_id: 7, cxid: 1, zxid, time: 100, op: txn.opcode().code() };
            assert_eq!(tree.apply(&hdr, &txn).result.err, 0);
        }
        State {
            tree,
            sessions: [(7, 30_000), (9, 4_000)].into_iter().collect(),
            digest_mismatches: 0,
        }
    }

    fn payload(state: &State) -> Vec<u8> {
        let mut body = Vec::new();
        state.write_body(&mut body).unwrap();
        let mut out = BytesMut::new();
        crate::zab::wire::write_snap_payload(&mut out, &body);
        out.to_vec()
    }

    /// Feeds `bytes` as a reader of a stream would: pieces of random sizes appended to a
    /// buffer, whatever was not taken offered again.
    fn feed_in_pieces(r: &mut SnapReceiver, bytes: &[u8], seed: u64) -> usize {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut buf, mut at, mut taken) = (Vec::new(), 0, 0);
        while !r.is_complete() && at < bytes.len() {
            let n = rng.random_range(1..=97).min(bytes.len() - at);
            buf.extend_from_slice(&bytes[at..at + n]);
            at += n;
            let used = r.feed(&buf).unwrap();
            buf.drain(..used);
            taken += used;
        }
        taken
    }

    #[test]
    fn pieces_of_any_size_build_the_same_state_and_file() {
        let state = sample_state(200);
        let mut bytes = payload(&state);
        let payload_len = bytes.len();
        // What follows the payload on the stream (the next packet) is left alone.
        bytes.extend_from_slice(&[0, 0, 0, 5, 1, 2, 3]);
        let zxid = Zxid::from(200u64);
        for seed in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let vfs: Arc<dyn corral_engine::io::Vfs> = Arc::new(corral_engine::io::SyncVfs::new());
            let store = SnapshotStore::open(vfs, dir.path(), 1).unwrap();
            let mut r =
                SnapReceiver::new(zxid, TreeOptions::default(), 1 << 20, 1 << 30, Some(&store))
                    .unwrap();
            assert_eq!(feed_in_pieces(&mut r, &bytes, seed), payload_len, "seed {seed}");
            let got = r.finish().unwrap();
            assert_eq!(got.zxid(), zxid);
            let Received { state: s, spool } = got.take().unwrap();
            assert!(got.take().is_none(), "taken once");
            assert_eq!(s.tree, state.tree);
            assert_eq!(s.tree.digest(), state.tree.digest());
            assert_eq!(s.sessions, state.sessions);
            // The spooled file, finished, holds exactly the body.
            let info = spool.unwrap().finish().unwrap();
            let mut body = Vec::new();
            state.write_body(&mut body).unwrap();
            assert_eq!(store.read(&info).unwrap(), body);
        }
    }

    #[test]
    fn refuses_damage_without_panicking_and_leaves_no_file() {
        let bytes = payload(&sample_state(30));
        let dir = tempfile::tempdir().unwrap();
        let vfs: Arc<dyn corral_engine::io::Vfs> = Arc::new(corral_engine::io::SyncVfs::new());
        let store = SnapshotStore::open(vfs, dir.path(), 1).unwrap();
        let zxid = Zxid::from(30u64);
        let mut refused = 0;
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            let mut r =
                SnapReceiver::new(zxid, TreeOptions::default(), 1 << 20, 1 << 30, Some(&store))
                    .unwrap();
            let outcome = r.feed(&b).and_then(|_| r.finish());
            if outcome.is_err() {
                refused += 1;
            }
        }
        // Flips that break a length, a path, an ACL reference or the signature are refused;
        // nothing checksums a payload's values (ZooKeeper's neither: TCP does), so a flipped
        // data or stat byte reads as another value.
        assert!(refused > 0, "refused {refused}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "unfinished files removed: {left:?}");
        // A wrong signature and a truncated payload are refused.
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 1] = b'X';
        assert!(matches!(
            SnapReceiver::read_whole(zxid, &b, TreeOptions::default(), 1 << 20),
            Err(ReceiveError::Signature)
        ));
        assert!(SnapReceiver::read_whole(zxid, &bytes[..n - 3], TreeOptions::default(), 1 << 20)
            .is_err());
    }

    #[test]
    fn refuses_a_body_over_the_limit() {
        let bytes = payload(&sample_state(100));
        let mut r =
            SnapReceiver::new(Zxid::from(100u64), TreeOptions::default(), 1 << 20, 1000, None)
                .unwrap();
        assert!(matches!(r.feed(&bytes), Err(ReceiveError::TooLarge { max: 1000 })));
    }
}
