//! corral-server: ZooKeeper's data model, client protocol and consensus on top of corral-engine.

pub mod db;
pub mod proto;
pub mod tree;
pub mod sim;
pub mod zab;
