//! Apache ZooKeeper snapshot files and Corral's snapshot bodies (the same body format).
#![no_main]
use corral_server::db::State;
use corral_server::tree::zk_snapshot::read_snapshot;
use corral_server::tree::TreeOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_snapshot(data, TreeOptions::default(), Some(1 << 16));
    let _ = State::read_body(data, 1, TreeOptions::default(), 1 << 16);
});
