//! Logged txn entries (TxnHeader + txn record + optional digest), as recovery decodes them.
#![no_main]
use corral_server::proto::TxnEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = TxnEntry::decode(data, 1 << 16) {
        let again = TxnEntry::decode(&e.encode(), 1 << 16).expect("re-decode");
        assert_eq!(again, e);
    }
});
