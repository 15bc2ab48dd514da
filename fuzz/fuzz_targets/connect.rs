//! The first frame of a session: ConnectRequest with its optional readOnly byte.
#![no_main]
use corral_server::proto::{ConnectRequest, Jute, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ConnectRequest::read(&mut Reader::with_max_len(data, 1 << 16));
});
