//! Log segment files: the tail scanner (torn tail vs corruption), recovery on open, iteration.
#![no_main]
use std::path::Path;
use std::sync::Arc;

use corral_engine::io::{OpenOptions, SimVfs, Vfs};
use corral_engine::log::format::{
    scan_segment, SegmentHeader, FORMAT_VERSION, FORMAT_VERSION_PIPELINED,
};
use corral_engine::log::{FlushStrategy, LogCore, LogOptions, RecoveryMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let vfs = SimVfs::new();
    let path = Path::new("/f/log.1");
    let mut f = vfs.open(path, OpenOptions::create_new()).expect("create");
    // Half the inputs get a valid header, so the record scanner is reached often; half of
    // those a version 2 header (pads, links, an in-flight window of up to 63 blocks).
    let first = data.first().copied().unwrap_or(0);
    let v2 = first & 2 == 2;
    let body = if first & 1 == 1 {
        let h = SegmentHeader {
            version: if v2 { FORMAT_VERSION_PIPELINED } else { FORMAT_VERSION },
            dbid: 0,
            base_zxid: 1,
            prev_zxid: 0,
            window_blocks: if v2 { u32::from(first >> 2) } else { 0 },
        };
        let mut v = h.encode().to_vec();
        v.extend_from_slice(&data[1..]);
        v
    } else {
        data.to_vec()
    };
    f.write_all_at(&body, 0).expect("write");
    f.sync_all().expect("sync");
    vfs.sync_dir(Path::new("/f")).expect("sync dir");
    let _ = scan_segment(f.as_ref(), |_, _| {});
    for recovery in [RecoveryMode::Strict, RecoveryMode::TruncateCorrupt] {
        let img = vfs.crash_image(0);
        let opts = LogOptions {
            strategy: if v2 { FlushStrategy::UringPipe } else { FlushStrategy::Group },
            vfs: Some(Arc::new(img)),
            prealloc_in_background: false,
            prealloc_bytes: 64 << 10,
            segment_bytes_max: 1 << 20,
            record_bytes_max: 64 << 10,
            batch_bytes_max: 64 << 10,
            recovery,
            ..LogOptions::default()
        };
        if let Ok((core, _)) = LogCore::open(Path::new("/f"), opts) {
            for r in core.iter_from(0) {
                if r.is_err() {
                    break;
                }
            }
        }
    }
});
