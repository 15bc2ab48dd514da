//! Property tests of record framing, segment scanning and iteration.

use std::path::Path;
use std::sync::Arc;

use corral_engine::io::{OpenOptions, SimVfs, Vfs};
use corral_engine::log::format::{
    encode_record, parse_frame, scan_segment, Frame, SegmentHeader, TailState, FORMAT_VERSION,
    FRAME_LEN, HEADER_LEN,
};
use corral_engine::log::{FlushStrategy, LogCore, LogOptions};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Records encoded back to back parse back exactly, in order.
    #[test]
    fn framing_round_trips(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40)) {
        let mut buf = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(&mut buf, i as u64 + 1, 48, p);
        }
        let mut pos = 0;
        for (i, p) in payloads.iter().enumerate() {
            match parse_frame(&buf[pos..]) {
                Frame::Valid { zxid, len, batch_start } => {
                    prop_assert_eq!(zxid, i as u64 + 1);
                    prop_assert_eq!(batch_start, 48);
                    prop_assert_eq!(&buf[pos + FRAME_LEN..pos + FRAME_LEN + len as usize], &p[..]);
                    pos += FRAME_LEN + len as usize;
                }
                other => prop_assert!(false, "record {} parsed as {:?}", i, other),
            }
        }
        prop_assert_eq!(pos, buf.len());
    }

    /// Arbitrary bytes after a valid header never panic the scanner, and whatever it accepts
    /// is internally consistent.
    #[test]
    fn scanning_garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..4000)) {
        let sim = SimVfs::new();
        let path = Path::new("/g/log.1");
        let mut f = sim.open(path, OpenOptions::create_new()).unwrap();
        let h = SegmentHeader { version: FORMAT_VERSION, dbid: 0, base_zxid: 1, prev_zxid: 0, window_blocks: 0 };
        f.write_all_at(&h.encode(), 0).unwrap();
        f.write_all_at(&garbage, HEADER_LEN as u64).unwrap();
        let scan = scan_segment(f.as_ref(), |_, _| {}).unwrap().unwrap();
        prop_assert!(scan.end >= HEADER_LEN as u64 && scan.end <= scan.file_len);
        if let TailState::Corrupt { offset, next_offset, .. } = scan.tail {
            prop_assert!(next_offset > offset);
        }
    }

    /// A random history of batches, rolls, truncations and reopenings reads back as the model
    /// says, from any starting zxid.
    #[test]
    fn iteration_matches_a_model(ops in prop::collection::vec((0u8..10, 1usize..8, 0usize..2000), 1..40), probe in any::<u64>()) {
        let sim = SimVfs::new();
        let dir = Path::new("/m/log");
        let o = LogOptions {
            strategy: FlushStrategy::Group,
            vfs: Some(Arc::new(sim.clone())),
            prealloc_bytes: 16 << 10,
            segment_bytes_max: 32 << 10,
            record_bytes_max: 4 << 10,
            batch_bytes_max: 8 << 10,
            ..LogOptions::default()
        };
        let (mut core, _) = LogCore::open(dir, o.clone()).unwrap();
        let mut model: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut next = 1u64;
        for (kind, n, size) in ops {
            match kind {
                0 => core.roll().unwrap(),
                1 => {
                    drop(core);
                    core = LogCore::open(dir, o.clone()).unwrap().0;
                }
                2 if !model.is_empty() => {
                    let keep = size % model.len();
                    let z = if keep == 0 { 0 } else { model[keep - 1].0 };
                    core.truncate_after(z).unwrap();
                    model.truncate(keep);
                }
                _ => {
                    let recs: Vec<(u64, Vec<u8>)> = (0..n).map(|i| {
                        next += 1 + (size as u64 % 3);
                        (next, vec![(i + size) as u8; (size * (i + 1)) % 4096])
                    }).collect();
                    let refs: Vec<(u64, &[u8])> = recs.iter().map(|(z, p)| (*z, p.as_slice())).collect();
                    core.write_batch(&refs, |_| {}).unwrap();
                    model.extend(recs);
                }
            }
            let from = if model.is_empty() { 0 } else { model[(probe as usize) % model.len()].0 };
            let got: Vec<(u64, Vec<u8>)> = core.iter_from(from).map(|r| { let r = r.unwrap(); (r.zxid, r.payload) }).collect();
            let want: Vec<(u64, Vec<u8>)> = model.iter().filter(|(z, _)| *z >= from).cloned().collect();
            prop_assert_eq!(got, want);
        }
    }
}
