//! corral-server: ZooKeeper's data model, client protocol and consensus on top of corral-engine.

pub mod proto;
pub mod tree;
