//! corral-server: ZooKeeper's data model, client protocol and consensus on top of corral-engine.

pub mod admin;
pub mod config;
pub mod core;
pub mod db;
pub mod memory;
pub mod net;
pub mod proto;
pub mod server;
pub mod session;
pub mod sim;
pub mod tools;
pub mod tree;
pub mod watch;
pub mod zab;
pub mod zkfiles;
