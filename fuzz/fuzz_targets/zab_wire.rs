//! Quorum traffic: every decoder a peer's bytes reach (QuorumPacket, then what its data holds:
//! LearnerInfo, epochs, forwarded requests, pings' session touches, revalidation, election
//! notifications, a SNAP payload). None may panic or allocate beyond its input; a packet that
//! decodes re-encodes to bytes that decode to the same packet.
#![no_main]
use corral_server::proto::Reader;
use corral_server::zab::wire::{
    decode_i32, decode_revalidate, decode_revalidate_reply, decode_touches, read_snap_payload,
    ForwardedRequest, LearnerInfo, Notification, QuorumPacket,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Notification::decode(data);
    let r = &mut Reader::with_max_len(data, 1 << 16);
    if let Ok(p) = QuorumPacket::read(r) {
        let again = p.encode();
        let back = QuorumPacket::read(&mut Reader::with_max_len(&again, 1 << 16)).expect("re-decode");
        assert_eq!(back, p, "a decoded packet re-encodes to itself");
        let body: &[u8] = p.payload();
        let _ = LearnerInfo::decode(body);
        let _ = decode_i32(body);
        let _ = ForwardedRequest::decode(body);
        let _ = decode_touches(body);
        let _ = decode_revalidate(body);
        let _ = decode_revalidate_reply(body);
        let _ = read_snap_payload(&mut Reader::with_max_len(body, 1 << 16), body);
    }
});
