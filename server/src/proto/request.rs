//! Client requests as one typed enum, decoded from a request header's opcode and the body bytes
//! that follow it, and encoded back (for tests, clients and forwarding to a leader).

use bytes::BufMut;
use thiserror::Error;

use super::codes::OpCode;
use super::jute::{Jute, JuteError, JuteWrite, Reader};
use super::records::*;

/// Why a request body could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The opcode is not one a client may send (the server answers UNIMPLEMENTED and closes).
    #[error("unknown or invalid opcode {0}")]
    UnknownOpcode(i32),
    /// The body is not a valid record for the opcode (MARSHALLINGERROR).
    #[error("malformed request body: {0}")]
    Malformed(#[from] JuteError),
    /// A multi mixed read and write ops, or used an op type a multi cannot hold.
    #[error("invalid op type {op} in {kind}")]
    InvalidMultiOp { op: i32, kind: &'static str },
}

/// One operation of a multi (opcode 14) or multiRead (opcode 22).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiOp {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    GetChildren(PathWatchRequest),
    GetData(PathWatchRequest),
}

impl MultiOp {
    /// A create of an ephemeral node (any ephemeral mode).
    pub fn creates_ephemeral(&self) -> bool {
        let flags = match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => r.flags,
            MultiOp::CreateTtl(r) => r.flags,
            _ => return false,
        };
        crate::proto::CreateMode::from_code(flags).is_some_and(|m| m.is_ephemeral())
    }

    /// The op's opcode, as written in its MultiHeader.
    pub fn opcode(&self) -> OpCode {
        match self {
            MultiOp::Create(_) => OpCode::Create,
            MultiOp::Create2(_) => OpCode::Create2,
            MultiOp::CreateContainer(_) => OpCode::CreateContainer,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    /// The path the op works on.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => &r.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) | MultiOp::GetData(r) => &r.path,
        }
    }

    /// True for the ops a multiRead may hold.
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    fn read(op: i32, r: &mut Reader<'_>) -> Result<Option<Self>, JuteError> {
        Ok(Some(match OpCode::from_code(op) {
            Some(OpCode::Create) => MultiOp::Create(Jute::read(r)?),
            Some(OpCode::Create2) => MultiOp::Create2(Jute::read(r)?),
            Some(OpCode::CreateContainer) => MultiOp::CreateContainer(Jute::read(r)?),
            Some(OpCode::CreateTtl) => MultiOp::CreateTtl(Jute::read(r)?),
            Some(OpCode::Delete) => MultiOp::Delete(Jute::read(r)?),
            Some(OpCode::SetData) => MultiOp::SetData(Jute::read(r)?),
            Some(OpCode::Check) => MultiOp::Check(Jute::read(r)?),
            Some(OpCode::GetChildren) => MultiOp::GetChildren(Jute::read(r)?),
            Some(OpCode::GetData) => MultiOp::GetData(Jute::read(r)?),
            _ => return Ok(None),
        }))
    }

    fn write_body<B: BufMut>(&self, w: &mut B) {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => r.write(w),
            MultiOp::CreateTtl(r) => r.write(w),
            MultiOp::Delete(r) => r.write(w),
            MultiOp::SetData(r) => r.write(w),
            MultiOp::Check(r) => r.write(w),
            MultiOp::GetChildren(r) | MultiOp::GetData(r) => r.write(w),
        }
    }
}

/// Decode a MultiOperationRecord: ops until a header with `done` set. `read_only` selects
/// multiRead (only getChildren/getData) versus multi (only writes and check).
fn read_multi(r: &mut Reader<'_>, read_only: bool) -> Result<Vec<MultiOp>, RequestError> {
    let kind = if read_only { "multiRead" } else { "multi" };
    let mut ops = Vec::new();
    loop {
        let header = MultiHeader::read(r)?;
        if header.done {
            return Ok(ops);
        }
        let op = MultiOp::read(header.op, r)?
            .ok_or(RequestError::InvalidMultiOp { op: header.op, kind })?;
        if op.is_read() != read_only {
            return Err(RequestError::InvalidMultiOp { op: header.op, kind });
        }
        ops.push(op);
    }
}

fn write_multi<B: BufMut>(ops: &[MultiOp], w: &mut B) {
    for op in ops {
        MultiHeader { op: op.opcode().code(), done: false, err: -1 }.write(w);
        op.write_body(w);
    }
    MultiHeader { op: -1, done: true, err: -1 }.write(w);
}

/// A decoded client request (everything after the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    DeleteContainer(DeleteRequest),
    Exists(PathWatchRequest),
    GetData(PathWatchRequest),
    SetData(SetDataRequest),
    GetAcl(PathRequest),
    SetAcl(SetAclRequest),
    GetChildren(PathWatchRequest),
    GetChildren2(PathWatchRequest),
    Sync(PathRequest),
    Ping,
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiOp>),
    Reconfig(ReconfigRequest),
    CheckWatches(WatchesRequest),
    RemoveWatches(WatchesRequest),
    GetEphemerals(GetEphemeralsRequest),
    GetAllChildrenNumber(PathRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    Auth(AuthPacket),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    Sasl(SaslToken),
    CloseSession,
}

impl Request {
    /// Creates an ephemeral node (itself, or one of its multi's ops): a local session must
    /// become global first (localSessionsUpgradingEnabled).
    pub fn creates_ephemeral(&self) -> bool {
        let flags = match self {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => r.flags,
            Request::CreateTtl(r) => r.flags,
            Request::Multi(ops) => return ops.iter().any(MultiOp::creates_ephemeral),
            _ => return false,
        };
        crate::proto::CreateMode::from_code(flags).is_some_and(|m| m.is_ephemeral())
    }

    /// Decode the body that follows a RequestHeader with opcode `op`. A bare `check` (13),
    /// `notification` (0), and the internal txn types are refused as unknown opcodes.
    pub fn decode(op: i32, body: &[u8], max_len: usize) -> Result<Request, RequestError> {
        let r = &mut Reader::with_max_len(body, max_len);
        let code = OpCode::from_code(op).ok_or(RequestError::UnknownOpcode(op))?;
        Ok(match code {
            OpCode::Create => Request::Create(Jute::read(r)?),
            OpCode::Create2 => Request::Create2(Jute::read(r)?),
            OpCode::CreateContainer => Request::CreateContainer(Jute::read(r)?),
            OpCode::CreateTtl => Request::CreateTtl(Jute::read(r)?),
            OpCode::Delete => Request::Delete(Jute::read(r)?),
            OpCode::DeleteContainer => Request::DeleteContainer(Jute::read(r)?),
            OpCode::Exists => Request::Exists(Jute::read(r)?),
            OpCode::GetData => Request::GetData(Jute::read(r)?),
            OpCode::SetData => Request::SetData(Jute::read(r)?),
            OpCode::GetAcl => Request::GetAcl(Jute::read(r)?),
            OpCode::SetAcl => Request::SetAcl(Jute::read(r)?),
            OpCode::GetChildren => Request::GetChildren(Jute::read(r)?),
            OpCode::GetChildren2 => Request::GetChildren2(Jute::read(r)?),
            OpCode::Sync => Request::Sync(Jute::read(r)?),
            OpCode::Ping => Request::Ping,
            OpCode::Multi => Request::Multi(read_multi(r, false)?),
            OpCode::MultiRead => Request::MultiRead(read_multi(r, true)?),
            OpCode::Reconfig => Request::Reconfig(Jute::read(r)?),
            OpCode::CheckWatches => Request::CheckWatches(Jute::read(r)?),
            OpCode::RemoveWatches => Request::RemoveWatches(Jute::read(r)?),
            OpCode::GetEphemerals => Request::GetEphemerals(Jute::read(r)?),
            OpCode::GetAllChildrenNumber => Request::GetAllChildrenNumber(Jute::read(r)?),
            OpCode::AddWatch => Request::AddWatch(Jute::read(r)?),
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::Auth => Request::Auth(Jute::read(r)?),
            OpCode::SetWatches => Request::SetWatches(Jute::read(r)?),
            OpCode::SetWatches2 => Request::SetWatches2(Jute::read(r)?),
            OpCode::Sasl => Request::Sasl(Jute::read(r)?),
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Notification | OpCode::Check | OpCode::CreateSession | OpCode::Error => {
                return Err(RequestError::UnknownOpcode(op))
            }
        })
    }

    /// The request's opcode.
    pub fn opcode(&self) -> OpCode {
        match self {
            Request::Create(_) => OpCode::Create,
            Request::Create2(_) => OpCode::Create2,
            Request::CreateContainer(_) => OpCode::CreateContainer,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete(_) => OpCode::Delete,
            Request::DeleteContainer(_) => OpCode::DeleteContainer,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::Auth(_) => OpCode::Auth,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::Sasl(_) => OpCode::Sasl,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// True for requests that go through the quorum and become txns (reference §3).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create(_)
                | Request::Create2(_)
                | Request::CreateContainer(_)
                | Request::CreateTtl(_)
                | Request::Delete(_)
                | Request::DeleteContainer(_)
                | Request::SetData(_)
                | Request::SetAcl(_)
                | Request::Multi(_)
                | Request::Reconfig(_)
                | Request::CloseSession
        )
    }

    /// Append the body (without the RequestHeader).
    pub fn write_body<B: BufMut>(&self, w: &mut B) {
        match self {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => r.write(w),
            Request::CreateTtl(r) => r.write(w),
            Request::Delete(r) | Request::DeleteContainer(r) => r.write(w),
            Request::Exists(r)
            | Request::GetData(r)
            | Request::GetChildren(r)
            | Request::GetChildren2(r) => r.write(w),
            Request::SetData(r) => r.write(w),
            Request::GetAcl(r) | Request::Sync(r) | Request::GetAllChildrenNumber(r) => r.write(w),
            Request::SetAcl(r) => r.write(w),
            Request::Multi(ops) | Request::MultiRead(ops) => write_multi(ops, w),
            Request::Reconfig(r) => r.write(w),
            Request::CheckWatches(r) | Request::RemoveWatches(r) => r.write(w),
            Request::GetEphemerals(r) => r.write(w),
            Request::AddWatch(r) => r.write(w),
            Request::Auth(r) => r.write(w),
            Request::SetWatches(r) => r.write(w),
            Request::SetWatches2(r) => r.write(w),
            Request::Sasl(r) => r.write(w),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
        }
    }

    /// Encode a whole client frame: length prefix, RequestHeader{xid, opcode}, body.
    pub fn encode_frame(&self, xid: i32) -> Vec<u8> {
        let mut body = Vec::new();
        RequestHeader { xid, op: self.opcode().code() }.write(&mut body);
        self.write_body(&mut body);
        let mut out = Vec::with_capacity(body.len() + 4);
        out.put_len(body.len());
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::jute::DEFAULT_MAX_LEN;
    use proptest::prelude::*;

    pub(crate) fn any_write_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            any::<CreateRequest>().prop_map(MultiOp::Create),
            any::<CreateRequest>().prop_map(MultiOp::Create2),
            any::<CreateRequest>().prop_map(MultiOp::CreateContainer),
            any::<CreateTtlRequest>().prop_map(MultiOp::CreateTtl),
            any::<DeleteRequest>().prop_map(MultiOp::Delete),
            any::<SetDataRequest>().prop_map(MultiOp::SetData),
            any::<CheckVersionRequest>().prop_map(MultiOp::Check),
        ]
    }

    fn any_read_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            any::<PathWatchRequest>().prop_map(MultiOp::GetChildren),
            any::<PathWatchRequest>().prop_map(MultiOp::GetData),
        ]
    }

    pub(crate) fn any_request() -> impl Strategy<Value = Request> {
        use proptest::collection::vec;
        prop_oneof![
            any::<CreateRequest>().prop_map(Request::Create),
            any::<CreateRequest>().prop_map(Request::Create2),
            any::<CreateRequest>().prop_map(Request::CreateContainer),
            any::<CreateTtlRequest>().prop_map(Request::CreateTtl),
            any::<DeleteRequest>().prop_map(Request::Delete),
            any::<DeleteRequest>().prop_map(Request::DeleteContainer),
            any::<PathWatchRequest>().prop_map(Request::Exists),
            any::<PathWatchRequest>().prop_map(Request::GetData),
            any::<SetDataRequest>().prop_map(Request::SetData),
            any::<PathRequest>().prop_map(Request::GetAcl),
            any::<SetAclRequest>().prop_map(Request::SetAcl),
            any::<PathWatchRequest>().prop_map(Request::GetChildren),
            any::<PathWatchRequest>().prop_map(Request::GetChildren2),
            any::<PathRequest>().prop_map(Request::Sync),
            Just(Request::Ping),
            vec(any_write_op(), 0..5).prop_map(Request::Multi),
            vec(any_read_op(), 0..5).prop_map(Request::MultiRead),
            any::<ReconfigRequest>().prop_map(Request::Reconfig),
            any::<WatchesRequest>().prop_map(Request::CheckWatches),
            any::<WatchesRequest>().prop_map(Request::RemoveWatches),
            any::<GetEphemeralsRequest>().prop_map(Request::GetEphemerals),
            any::<PathRequest>().prop_map(Request::GetAllChildrenNumber),
            any::<AddWatchRequest>().prop_map(Request::AddWatch),
            Just(Request::WhoAmI),
            any::<AuthPacket>().prop_map(Request::Auth),
            any::<SetWatches>().prop_map(Request::SetWatches),
            any::<SetWatches2>().prop_map(Request::SetWatches2),
            any::<SaslToken>().prop_map(Request::Sasl),
            Just(Request::CloseSession),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn requests_round_trip(req in any_request()) {
            let mut body = Vec::new();
            req.write_body(&mut body);
            let back = Request::decode(req.opcode().code(), &body, DEFAULT_MAX_LEN).unwrap();
            prop_assert_eq!(back, req);
        }

        #[test]
        fn truncated_requests_fail(req in any_request()) {
            let mut body = Vec::new();
            req.write_body(&mut body);
            for cut in 0..body.len() {
                // Must not panic; a prefix may only decode if the record ended early.
                let _ = Request::decode(req.opcode().code(), &body[..cut], DEFAULT_MAX_LEN);
            }
        }

        #[test]
        fn garbage_never_panics(op in -20i32..120, body in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Request::decode(op, &body, DEFAULT_MAX_LEN);
        }
    }

    #[test]
    fn rejects_bad_opcodes_and_mixed_multis() {
        assert_eq!(Request::decode(13, &[], 100), Err(RequestError::UnknownOpcode(13)));
        assert_eq!(Request::decode(0, &[], 100), Err(RequestError::UnknownOpcode(0)));
        assert_eq!(Request::decode(999, &[], 100), Err(RequestError::UnknownOpcode(999)));
        let mut body = Vec::new();
        write_multi(
            &[MultiOp::GetData(PathWatchRequest { path: "/a".into(), watch: false })],
            &mut body,
        );
        assert!(matches!(
            Request::decode(14, &body, DEFAULT_MAX_LEN),
            Err(RequestError::InvalidMultiOp { op: 4, .. })
        ));
        assert!(Request::decode(22, &body, DEFAULT_MAX_LEN).is_ok());
        assert!(matches!(
            Request::decode(1, &[0, 0], DEFAULT_MAX_LEN),
            Err(RequestError::Malformed(JuteError::Truncated { .. }))
        ));
    }

    #[test]
    fn frame_layout() {
        let frame = Request::Ping.encode_frame(-2);
        assert_eq!(frame, [0, 0, 0, 8, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 11]);
    }
}
