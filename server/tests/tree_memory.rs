//! Memory per znode of the DataTree at scale (ignored by default: it builds 1,000,000 znodes).
//!
//! Run: `cargo test --release -p corral-server --test tree_memory -- --ignored --nocapture`
//! Builds /app/service-NNN/node-NNNNNN (1000 × 1000) with 100 bytes of distinct data each,
//! applying real create txns, and reports the resident-set growth per znode, minus the bytes of
//! its path and data.

use corral_server::proto::{Acl, CreateTxn, Data, Txn, TxnHeader};
use corral_server::tree::DataTree;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("rss");
    pages * 4096
}

fn create(tree: &mut DataTree, zxid: i64, path: String, data: Data) {
    let txn = Txn::Create(CreateTxn {
        path,
        data,
        acl: Acl::open_unsafe(),
        ephemeral: false,
        parent_c_version: -1,
    });
    let hdr = TxnHeader { client_id: 1, cxid: 0, zxid, time: zxid, op: 1 };
    assert_eq!(tree.apply(&hdr, &txn).result.err, 0);
}

#[test]
#[ignore]
fn bytes_per_znode_at_one_million() {
    const SERVICES: usize = 1000;
    const PER_SERVICE: usize = 1000;
    let before = rss_bytes();
    let mut tree = DataTree::default();
    let mut zxid = 0;
    let mut payload_bytes = 0u64;
    zxid += 1;
    create(&mut tree, zxid, "/app".into(), Data::empty());
    for s in 0..SERVICES {
        zxid += 1;
        create(&mut tree, zxid, format!("/app/service-{s:03}"), Data::empty());
    }
    // Interleave services so inserts land all over the map, as real traffic does.
    for n in 0..PER_SERVICE {
        for s in 0..SERVICES {
            zxid += 1;
            let path = format!("/app/service-{s:03}/node-{n:06}");
            let mut data = vec![b'x'; 100];
            data[..8].copy_from_slice(&(zxid as u64).to_be_bytes());
            payload_bytes += (path.len() + data.len()) as u64;
            create(&mut tree, zxid, path, Data::from(data));
        }
    }
    let after = rss_bytes();
    let count = (SERVICES * PER_SERVICE) as u64;
    assert_eq!(tree.node_count() as u64, count + SERVICES as u64 + 1 + 5);
    let per_node = (after - before) as f64 / count as f64;
    let overhead = (after - before - payload_bytes) as f64 / count as f64;
    println!(
        "znodes: {count}; RSS delta {} MiB; {per_node:.1} bytes/znode total; \
         {overhead:.1} bytes/znode beyond path and data",
        (after - before) >> 20
    );
    // Keep the tree alive until measured.
    assert!(tree.exists("/app/service-999/node-000999"));
}
