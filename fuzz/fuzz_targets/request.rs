//! Client request frames: RequestHeader + body for any opcode, as the server decodes them.
#![no_main]
use corral_server::proto::{Jute, Reader, Request, RequestHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = &mut Reader::with_max_len(data, 1 << 16);
    if let Ok(h) = RequestHeader::read(r) {
        let body = &data[r.position()..];
        if let Ok(req) = Request::decode(h.op, body, 1 << 16) {
            // What decodes must re-encode to something that decodes the same.
            let frame = req.encode_frame(h.xid);
            let again = Request::decode(h.op, &frame[12..], 1 << 16).expect("re-decode");
            assert_eq!(again, req);
        }
    }
});
