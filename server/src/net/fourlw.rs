//! Four-letter words on the client port: detection on a fresh connection and the answer.
//! The rendering of each word lives in `crate::admin`; this module gathers the figures.

use std::sync::atomic::Ordering;

use crate::core::Shared;

/// The text answer if the first four bytes of a connection are a four-letter word.
pub fn answer(first: &[u8; 4], shared: &Shared) -> Option<String> {
    match first {
        b"ruok" => Some("imok".into()),
        b"srvr" => Some(format!(
            "Zookeeper version: 3.8.0-corral-{}, built on unknown\nLatency min/avg/max: 0/0/0\n\
             Received: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: \
             standalone\nNode count: {}\n",
            env!("CARGO_PKG_VERSION"),
            shared.stats.received.load(Ordering::Relaxed),
            shared.stats.sent.load(Ordering::Relaxed),
            shared.conns.lock().map(|c| c.len()).unwrap_or(0),
            shared.outstanding.load(Ordering::Relaxed),
            shared.last_zxid.load(Ordering::Relaxed),
            shared.view.read().map(|v| v.node_count()).unwrap_or(0),
        )),
        b"envi" => Some(format!(
            "Environment:\nzookeeper.version=3.8.0-corral-{}, built on unknown\n",
            env!("CARGO_PKG_VERSION")
        )),
        _ => None,
    }
}
