//! Txns: the deterministic state changes written to the log and proposed to followers, as one
//! enum keyed by the TxnHeader type (reference §13), plus whole log entries
//! (TxnHeader + txn + optional TxnDigest).

use bytes::BufMut;

use super::codes::{ErrorCode, OpCode};
use super::jute::{Data, Jute, JuteError, Reader};
use super::records::*;

/// A txn body. The variant fixes the TxnHeader type written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Txn {
    CreateSession(CreateSessionTxn),
    CloseSession(CloseSessionTxn),
    /// create (1).
    Create(CreateTxn),
    /// create2 (15): same record as create, but the reply carries a Stat.
    Create2(CreateTxn),
    CreateTtl(CreateTtlTxn),
    CreateContainer(CreateContainerTxn),
    Delete(DeleteTxn),
    DeleteContainer(DeleteTxn),
    SetData(SetDataTxn),
    /// reconfig (16): a SetDataTxn on /zookeeper/config.
    Reconfig(SetDataTxn),
    SetAcl(SetAclTxn),
    Check(CheckVersionTxn),
    Error(ErrorTxn),
    Multi(Vec<Txn>),
}

impl Txn {
    /// The TxnHeader type of this txn.
    pub fn opcode(&self) -> OpCode {
        match self {
            Txn::CreateSession(_) => OpCode::CreateSession,
            Txn::CloseSession(_) => OpCode::CloseSession,
            Txn::Create(_) => OpCode::Create,
            Txn::Create2(_) => OpCode::Create2,
            Txn::CreateTtl(_) => OpCode::CreateTtl,
            Txn::CreateContainer(_) => OpCode::CreateContainer,
            Txn::Delete(_) => OpCode::Delete,
            Txn::DeleteContainer(_) => OpCode::DeleteContainer,
            Txn::SetData(_) => OpCode::SetData,
            Txn::Reconfig(_) => OpCode::Reconfig,
            Txn::SetAcl(_) => OpCode::SetAcl,
            Txn::Check(_) => OpCode::Check,
            Txn::Error(_) => OpCode::Error,
            Txn::Multi(_) => OpCode::Multi,
        }
    }

    /// An error txn with this code.
    pub fn error(code: ErrorCode) -> Txn {
        Txn::Error(ErrorTxn { err: code.code() })
    }

    /// The path the txn works on, if it has one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Txn::Create(t) | Txn::Create2(t) => Some(&t.path),
            Txn::CreateTtl(t) => Some(&t.path),
            Txn::CreateContainer(t) => Some(&t.path),
            Txn::Delete(t) | Txn::DeleteContainer(t) => Some(&t.path),
            Txn::SetData(t) | Txn::Reconfig(t) => Some(&t.path),
            Txn::SetAcl(t) => Some(&t.path),
            Txn::Check(t) => Some(&t.path),
            Txn::CreateSession(_) | Txn::CloseSession(_) | Txn::Error(_) | Txn::Multi(_) => None,
        }
    }

    /// Decode a txn body of header type `op`.
    pub fn read(op: i32, r: &mut Reader<'_>) -> Result<Txn, JuteError> {
        let bad = |r: &Reader<'_>| JuteError::InvalidValue {
            what: "txn type",
            value: op.into(),
            offset: r.position(),
        };
        Ok(match OpCode::from_code(op).ok_or_else(|| bad(r))? {
            OpCode::CreateSession => Txn::CreateSession(Jute::read(r)?),
            OpCode::CloseSession => Txn::CloseSession(Jute::read(r)?),
            OpCode::Create => Txn::Create(Jute::read(r)?),
            OpCode::Create2 => Txn::Create2(Jute::read(r)?),
            OpCode::CreateTtl => Txn::CreateTtl(Jute::read(r)?),
            OpCode::CreateContainer => Txn::CreateContainer(Jute::read(r)?),
            OpCode::Delete => Txn::Delete(Jute::read(r)?),
            OpCode::DeleteContainer => Txn::DeleteContainer(Jute::read(r)?),
            OpCode::SetData => Txn::SetData(Jute::read(r)?),
            OpCode::Reconfig => Txn::Reconfig(Jute::read(r)?),
            OpCode::SetAcl => Txn::SetAcl(Jute::read(r)?),
            OpCode::Check => Txn::Check(Jute::read(r)?),
            OpCode::Error => Txn::Error(Jute::read(r)?),
            OpCode::Multi => {
                let subs = Vec::<SubTxn>::read(r)?;
                let mut txns = Vec::with_capacity(subs.len());
                for sub in subs {
                    let mut sr = Reader::with_max_len(sub.data.as_slice(), r.max_len());
                    let txn = match OpCode::from_code(sub.op) {
                        Some(OpCode::Multi | OpCode::CreateSession | OpCode::CloseSession)
                        | None => {
                            return Err(JuteError::InvalidValue {
                                what: "multi sub-txn type",
                                value: sub.op.into(),
                                offset: r.position(),
                            })
                        }
                        Some(_) => Txn::read(sub.op, &mut sr)?,
                    };
                    txns.push(txn);
                }
                Txn::Multi(txns)
            }
            _ => return Err(bad(r)),
        })
    }

    /// Append the body.
    pub fn write<B: BufMut>(&self, w: &mut B) {
        match self {
            Txn::CreateSession(t) => t.write(w),
            Txn::CloseSession(t) => t.write(w),
            Txn::Create(t) | Txn::Create2(t) => t.write(w),
            Txn::CreateTtl(t) => t.write(w),
            Txn::CreateContainer(t) => t.write(w),
            Txn::Delete(t) | Txn::DeleteContainer(t) => t.write(w),
            Txn::SetData(t) | Txn::Reconfig(t) => t.write(w),
            Txn::SetAcl(t) => t.write(w),
            Txn::Check(t) => t.write(w),
            Txn::Error(t) => t.write(w),
            Txn::Multi(txns) => {
                let subs: Vec<SubTxn> = txns
                    .iter()
                    .map(|t| {
                        let mut data = Vec::new();
                        t.write(&mut data);
                        SubTxn { op: t.opcode().code(), data: Data::from(data) }
                    })
                    .collect();
                subs.write(w);
            }
        }
    }

    /// The encoded body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

/// One txn log entry / proposal payload: header, body, and the tree digest after it (3.6+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnEntry {
    pub header: TxnHeader,
    pub txn: Txn,
    pub digest: Option<TxnDigest>,
}

impl TxnEntry {
    /// Decode an entry; the digest is read if bytes remain after the txn, as ZooKeeper does.
    pub fn decode(buf: &[u8], max_len: usize) -> Result<TxnEntry, JuteError> {
        let r = &mut Reader::with_max_len(buf, max_len);
        let header = TxnHeader::read(r)?;
        // A closeSession from before 3.6 has no body at all, so its digest (if any) cannot be
        // told apart from a body by position alone: a 3.6+ closeSession always has a body.
        let txn = Txn::read(header.op, r)?;
        let digest = if r.is_empty() { None } else { Some(TxnDigest::read(r)?) };
        Ok(TxnEntry { header, txn, digest })
    }

    /// Append the encoded entry.
    pub fn write<B: BufMut>(&self, w: &mut B) {
        self.header.write(w);
        self.txn.write(w);
        if let Some(d) = &self.digest {
            d.write(w);
        }
    }

    /// The encoded entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::jute::DEFAULT_MAX_LEN;
    use proptest::prelude::*;

    fn any_simple_txn() -> impl Strategy<Value = Txn> {
        prop_oneof![
            any::<CreateSessionTxn>().prop_map(Txn::CreateSession),
            any::<Option<Vec<String>>>()
                .prop_map(|paths_to_delete| Txn::CloseSession(CloseSessionTxn { paths_to_delete })),
            (any::<String>(), any::<Data>(), any::<Vec<Acl>>(), any::<bool>(), any::<i32>())
                .prop_map(|(path, data, acl, ephemeral, parent_c_version)| {
                    Txn::Create(CreateTxn { path, data, acl, ephemeral, parent_c_version })
                }),
            any::<CreateTtlTxn>().prop_map(Txn::CreateTtl),
            any::<CreateContainerTxn>().prop_map(Txn::CreateContainer),
            any::<DeleteTxn>().prop_map(Txn::Delete),
            any::<DeleteTxn>().prop_map(Txn::DeleteContainer),
            any::<SetDataTxn>().prop_map(Txn::SetData),
            any::<SetDataTxn>().prop_map(Txn::Reconfig),
            any::<SetAclTxn>().prop_map(Txn::SetAcl),
            any::<CheckVersionTxn>().prop_map(Txn::Check),
            any::<ErrorTxn>().prop_map(Txn::Error),
        ]
    }

    pub(crate) fn any_txn() -> impl Strategy<Value = Txn> {
        let sub = any_simple_txn().prop_filter("multi holds no session txns", |t| {
            !matches!(t, Txn::CreateSession(_) | Txn::CloseSession(_))
        });
        prop_oneof![
            4 => any_simple_txn(),
            1 => proptest::collection::vec(sub, 0..4).prop_map(Txn::Multi),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn txns_round_trip(txn in any_txn(), header in any::<TxnHeader>(), digest in any::<Option<(i32, i64)>>()) {
            // A pre-3.6 closeSession (no body) can't carry a digest unambiguously.
            let digest = match &txn {
                Txn::CloseSession(CloseSessionTxn { paths_to_delete: None }) => None,
                _ => digest.map(|(version, tree_digest)| TxnDigest { version, tree_digest }),
            };
            let entry = TxnEntry { header: TxnHeader { op: txn.opcode().code(), ..header }, txn, digest };
            let bytes = entry.encode();
            prop_assert_eq!(TxnEntry::decode(&bytes, DEFAULT_MAX_LEN).unwrap(), entry);
            for cut in 0..bytes.len() {
                let _ = TxnEntry::decode(&bytes[..cut], DEFAULT_MAX_LEN);
            }
        }

        #[test]
        fn garbage_never_panics(op in -12i32..25, bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Txn::read(op, &mut Reader::new(&bytes));
        }
    }

    #[test]
    fn create_session_entry_is_48_bytes() {
        // Live 3.8.0: a createSession log entry (header + txn + digest) is 48 bytes.
        let entry = TxnEntry {
            header: TxnHeader { client_id: 1, cxid: 0, zxid: 1, time: 0, op: -10 },
            txn: Txn::CreateSession(CreateSessionTxn { time_out: 30_000 }),
            digest: Some(TxnDigest { version: 2, tree_digest: 0 }),
        };
        assert_eq!(entry.encode().len(), 48);
    }
}
