//! The ZooKeeper wire and disk encodings: jute primitives, every record of the client protocol
//! and the txn log, typed requests, replies and txns.
//!
//! Everything here is a pure function of bytes: no sockets, clocks, files or server state.
//! Decoders never panic and never allocate beyond their input on any byte sequence; they return
//! [`JuteError`] or [`RequestError`] instead.

pub mod codes;
pub mod jute;
pub mod records;
pub mod request;
pub mod response;
pub mod txn;

pub use codes::{
    perms, xids, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType,
};
pub use jute::{Data, Jute, JuteError, JuteWrite, Reader, DEFAULT_MAX_LEN};
pub use records::*;
pub use request::{MultiOp, Request, RequestError};
pub use response::{encode_notification, encode_reply, OpResult, Response};
pub use txn::{Txn, TxnEntry};
