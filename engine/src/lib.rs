//! corral-engine: an embeddable storage engine for log-structured systems.
//!
//! * [`log`]: the group-commit transaction log — segment files of checksummed, zxid-ordered
//!   records, written by one writer thread that turns many appends into one write and one flush.
//! * [`io`]: the storage boundary — io_uring, plain syscalls, and a fault-injecting simulated
//!   disk for crash tests.
//!
//! The engine has no async runtime and knows nothing of ZooKeeper: zxids are increasing u64s
//! and payloads are bytes.

pub mod io;
pub mod log;
pub mod recovery;
pub mod snapshot;
