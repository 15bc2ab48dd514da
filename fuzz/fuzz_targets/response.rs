//! Reply bodies as a client (and the differential tests) decode them, for every opcode.
#![no_main]
use corral_server::proto::{OpCode, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let ops = OpCode::ALL;
    let op = ops[data[0] as usize % ops.len()];
    let _ = Response::decode(op, &data[1..], 1 << 16);
});
