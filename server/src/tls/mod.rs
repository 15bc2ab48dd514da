//! TLS as ZooKeeper 3.8 configures it: key and trust stores ([`store`]).

pub mod store;
