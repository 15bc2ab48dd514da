//! corral-server: ZooKeeper's data model, client protocol and consensus on top of corral-engine.

pub mod admin;
pub mod audit;
pub mod config;
pub mod db;
pub mod limits;
pub mod memory;
pub mod net;
pub mod pipeline;
pub mod proto;
pub mod replica;
pub mod sasl;
pub mod server;
pub mod session;
pub mod sim;
pub mod tls;
pub mod tools;
pub mod tree;
pub mod watch;
pub mod zab;
pub mod zkfiles;
pub mod zxid;
