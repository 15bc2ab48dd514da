//! Server replies: the body records per opcode, multi results, and whole frames (length prefix,
//! ReplyHeader, body) including watch notifications.

use bytes::BufMut;

use super::codes::{ErrorCode, OpCode};
use super::jute::{Data, Jute, JuteError, JuteWrite, Reader};
use super::records::*;
use super::request::RequestError;

/// One result of a multi (14) or multiRead (22) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// create (1): the created path.
    Create {
        path: String,
    },
    /// create2/createContainer/createTTL: written with type 15.
    Create2 {
        path: String,
        stat: Stat,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    Check,
    GetChildren {
        children: Vec<String>,
    },
    GetData {
        data: Data,
        stat: Stat,
    },
    /// A failed (or rolled back, err 0) op: type -1 with an ErrorResponse body.
    Error {
        err: i32,
    },
}

impl OpResult {
    fn header_op(&self) -> OpCode {
        match self {
            OpResult::Create { .. } => OpCode::Create,
            OpResult::Create2 { .. } => OpCode::Create2,
            OpResult::Delete => OpCode::Delete,
            OpResult::SetData { .. } => OpCode::SetData,
            OpResult::Check => OpCode::Check,
            OpResult::GetChildren { .. } => OpCode::GetChildren,
            OpResult::GetData { .. } => OpCode::GetData,
            OpResult::Error { .. } => OpCode::Error,
        }
    }

    fn write<B: BufMut>(&self, w: &mut B) {
        let err = match self {
            OpResult::Error { err } => *err,
            _ => 0,
        };
        MultiHeader { op: self.header_op().code(), done: false, err }.write(w);
        match self {
            OpResult::Create { path } => w.put_ustring(path),
            OpResult::Create2 { path, stat } => {
                w.put_ustring(path);
                stat.write(w);
            }
            OpResult::SetData { stat } => stat.write(w),
            OpResult::GetChildren { children } => children.write(w),
            OpResult::GetData { data, stat } => {
                data.write(w);
                stat.write(w);
            }
            OpResult::Error { err } => w.put_i32(*err),
            OpResult::Delete | OpResult::Check => {}
        }
    }

    fn read(header: &MultiHeader, r: &mut Reader<'_>) -> Result<Self, JuteError> {
        Ok(match OpCode::from_code(header.op) {
            Some(OpCode::Create) => OpResult::Create { path: r.read_ustring()? },
            Some(OpCode::Create2) => {
                OpResult::Create2 { path: r.read_ustring()?, stat: Stat::read(r)? }
            }
            Some(OpCode::Delete) => OpResult::Delete,
            Some(OpCode::SetData) => OpResult::SetData { stat: Stat::read(r)? },
            Some(OpCode::Check) => OpResult::Check,
            Some(OpCode::GetChildren) => OpResult::GetChildren { children: Jute::read(r)? },
            Some(OpCode::GetData) => {
                OpResult::GetData { data: r.read_data()?, stat: Stat::read(r)? }
            }
            Some(OpCode::Error) => OpResult::Error { err: r.read_i32()? },
            _ => {
                return Err(JuteError::InvalidValue {
                    what: "multi result type",
                    value: header.op.into(),
                    offset: r.position(),
                })
            }
        })
    }
}

/// A reply body. Failed requests have none: the ReplyHeader's err says it all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// delete, sync-less ops, ping, auth, setWatches, checkWatches, removeWatches, closeSession.
    Empty,
    Create(CreateResponse),
    Create2(Create2Response),
    /// exists, setData, setACL.
    Stat(StatResponse),
    /// getData and reconfig.
    GetData(GetDataResponse),
    GetAcl(GetAclResponse),
    GetChildren(GetChildrenResponse),
    GetChildren2(GetChildren2Response),
    Sync(PathRequest),
    Multi(Vec<OpResult>),
    GetEphemerals(GetEphemeralsResponse),
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    /// addWatch answers with ErrorResponse{0}.
    Error(ErrorResponse),
    WhoAmI(WhoAmIResponse),
    Sasl(SaslToken),
}

impl Response {
    /// Append the body.
    pub fn write<B: BufMut>(&self, w: &mut B) {
        match self {
            Response::Empty => {}
            Response::Create(r) => r.write(w),
            Response::Create2(r) => r.write(w),
            Response::Stat(r) => r.write(w),
            Response::GetData(r) => r.write(w),
            Response::GetAcl(r) => r.write(w),
            Response::GetChildren(r) => r.write(w),
            Response::GetChildren2(r) => r.write(w),
            Response::Sync(r) => r.write(w),
            Response::Multi(results) => {
                for res in results {
                    res.write(w);
                }
                MultiHeader { op: -1, done: true, err: -1 }.write(w);
            }
            Response::GetEphemerals(r) => r.write(w),
            Response::GetAllChildrenNumber(r) => r.write(w),
            Response::Error(r) => r.write(w),
            Response::WhoAmI(r) => r.write(w),
            Response::Sasl(r) => r.write(w),
        }
    }

    /// Decode a successful reply body for a request with opcode `op` (client side and tests).
    pub fn decode(op: OpCode, body: &[u8], max_len: usize) -> Result<Response, RequestError> {
        let r = &mut Reader::with_max_len(body, max_len);
        Ok(match op {
            OpCode::Create => Response::Create(Jute::read(r)?),
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => {
                Response::Create2(Jute::read(r)?)
            }
            OpCode::Exists | OpCode::SetData | OpCode::SetAcl => Response::Stat(Jute::read(r)?),
            OpCode::GetData | OpCode::Reconfig => Response::GetData(Jute::read(r)?),
            OpCode::GetAcl => Response::GetAcl(Jute::read(r)?),
            OpCode::GetChildren => Response::GetChildren(Jute::read(r)?),
            OpCode::GetChildren2 => Response::GetChildren2(Jute::read(r)?),
            OpCode::Sync => Response::Sync(Jute::read(r)?),
            OpCode::Multi | OpCode::MultiRead => {
                let mut results = Vec::new();
                loop {
                    let header = MultiHeader::read(r)?;
                    if header.done {
                        break;
                    }
                    results.push(OpResult::read(&header, r)?);
                }
                Response::Multi(results)
            }
            OpCode::GetEphemerals => Response::GetEphemerals(Jute::read(r)?),
            OpCode::GetAllChildrenNumber => Response::GetAllChildrenNumber(Jute::read(r)?),
            OpCode::AddWatch => Response::Error(Jute::read(r)?),
            OpCode::WhoAmI => Response::WhoAmI(Jute::read(r)?),
            OpCode::Sasl => Response::Sasl(Jute::read(r)?),
            _ => Response::Empty,
        })
    }
}

/// Encode a reply frame: 4-byte length, ReplyHeader, and the body only when `err` is OK.
pub fn encode_reply<B: BufMut>(w: &mut B, xid: i32, zxid: i64, err: ErrorCode, body: &Response) {
    let mut payload = Vec::new();
    ReplyHeader { xid, zxid, err: err.code() }.write(&mut payload);
    if err == ErrorCode::Ok {
        body.write(&mut payload);
    }
    w.put_len(payload.len());
    w.put_slice(&payload);
}

/// Encode a watch notification frame (xid -1). `zxid` is -1 up to 3.8, the txn zxid from 3.9.
pub fn encode_notification<B: BufMut>(w: &mut B, zxid: i64, event: &WatcherEvent) {
    let mut payload = Vec::new();
    ReplyHeader { xid: super::codes::xids::NOTIFICATION, zxid, err: 0 }.write(&mut payload);
    event.write(&mut payload);
    w.put_len(payload.len());
    w.put_slice(&payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jute::DEFAULT_MAX_LEN;
    use proptest::prelude::*;

    fn any_op_result() -> impl Strategy<Value = OpResult> {
        prop_oneof![
            any::<String>().prop_map(|path| OpResult::Create { path }),
            (any::<String>(), any::<Stat>())
                .prop_map(|(path, stat)| OpResult::Create2 { path, stat }),
            Just(OpResult::Delete),
            any::<Stat>().prop_map(|stat| OpResult::SetData { stat }),
            Just(OpResult::Check),
            any::<Vec<String>>().prop_map(|children| OpResult::GetChildren { children }),
            (any::<Data>(), any::<Stat>())
                .prop_map(|(data, stat)| OpResult::GetData { data, stat }),
            any::<i32>().prop_map(|err| OpResult::Error { err }),
        ]
    }

    fn any_response() -> impl Strategy<Value = (OpCode, Response)> {
        prop_oneof![
            any::<CreateResponse>().prop_map(|r| (OpCode::Create, Response::Create(r))),
            any::<Create2Response>().prop_map(|r| (OpCode::Create2, Response::Create2(r))),
            any::<StatResponse>().prop_map(|r| (OpCode::Exists, Response::Stat(r))),
            any::<GetDataResponse>().prop_map(|r| (OpCode::GetData, Response::GetData(r))),
            any::<GetAclResponse>().prop_map(|r| (OpCode::GetAcl, Response::GetAcl(r))),
            any::<GetChildrenResponse>()
                .prop_map(|r| (OpCode::GetChildren, Response::GetChildren(r))),
            any::<GetChildren2Response>()
                .prop_map(|r| (OpCode::GetChildren2, Response::GetChildren2(r))),
            any::<PathRequest>().prop_map(|r| (OpCode::Sync, Response::Sync(r))),
            proptest::collection::vec(any_op_result(), 0..5)
                .prop_map(|r| (OpCode::Multi, Response::Multi(r))),
            any::<GetEphemeralsResponse>()
                .prop_map(|r| (OpCode::GetEphemerals, Response::GetEphemerals(r))),
            any::<GetAllChildrenNumberResponse>()
                .prop_map(|r| (OpCode::GetAllChildrenNumber, Response::GetAllChildrenNumber(r))),
            any::<ErrorResponse>().prop_map(|r| (OpCode::AddWatch, Response::Error(r))),
            any::<WhoAmIResponse>().prop_map(|r| (OpCode::WhoAmI, Response::WhoAmI(r))),
            any::<SaslToken>().prop_map(|r| (OpCode::Sasl, Response::Sasl(r))),
            Just((OpCode::Delete, Response::Empty)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn responses_round_trip((op, resp) in any_response()) {
            let mut body = Vec::new();
            resp.write(&mut body);
            prop_assert_eq!(Response::decode(op, &body, DEFAULT_MAX_LEN).unwrap(), resp);
            for cut in 0..body.len() {
                let _ = Response::decode(op, &body[..cut], DEFAULT_MAX_LEN);
            }
        }
    }

    #[test]
    fn failed_reply_has_no_body() {
        let mut out = Vec::new();
        let body = Response::Stat(StatResponse::default());
        encode_reply(&mut out, 5, 9, ErrorCode::NoNode, &body);
        assert_eq!(out.len(), 4 + 16);
        assert_eq!(&out[16..20], &(-101i32).to_be_bytes());
        let mut out = Vec::new();
        encode_reply(&mut out, 5, 9, ErrorCode::Ok, &Response::Error(ErrorResponse { err: 0 }));
        // Live 3.8.0: addWatch's reply payload is 20 bytes (after the length prefix).
        assert_eq!(out.len(), 4 + 20);
    }

    #[test]
    fn notification_layout() {
        let mut out = Vec::new();
        let ev = WatcherEvent { event_type: 3, state: 3, path: "/w".into() };
        encode_notification(&mut out, -1, &ev);
        let mut r = Reader::new(&out[4..]);
        let h = ReplyHeader::read(&mut r).unwrap();
        assert_eq!((h.xid, h.zxid, h.err), (-1, -1, 0));
        assert_eq!(WatcherEvent::read(&mut r).unwrap(), ev);
    }
}
