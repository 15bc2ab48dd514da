//! The pipeline's decisions on hostile input: a stream of request frames, each from one of a
//! few sessions with its own authenticated ids, is decoded, prepared against the speculative
//! state, applied, logged (encoded) and replayed (decoded and applied to a second state), or
//! answered as a read with watches. Nothing may panic; replay must reach the same tree digest;
//! every txn must decode as it was encoded, however large the client made it.
#![no_main]
use corral_server::pipeline::reads::{answer, Asker};
use corral_server::db::State;
use corral_server::proto::{Id, Jute, Reader, Request, RequestHeader, TxnDigest, TxnEntry};
use corral_server::tree::acl::AuthSchemes;
use corral_server::tree::prepare::{prepare_close_session, prepare_txn};
use corral_server::tree::{PrepareConfig, SessionContext, TreeOptions};
use corral_server::watch::WatchManager;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let cfg = PrepareConfig { extended_types: true, ..PrepareConfig::default() };
    let mut state = State::new(TreeOptions { extended_types: true });
    let mut replica = State::new(TreeOptions { extended_types: true });
    let mut watches = WatchManager::new();
    let schemes = AuthSchemes::default();
    let auths: [Vec<Id>; 3] = [
        vec![Id { scheme: "ip".into(), id: "127.0.0.1".into() }],
        vec![
            Id { scheme: "ip".into(), id: "127.0.0.1".into() },
            Id { scheme: "digest".into(), id: "u:4gsL1bVEmnw7kDkGeE7C7LhdFZA=".into() },
        ],
        vec![Id { scheme: "super".into(), id: String::new() }],
    ];
    let mut zxid = 1i64;
    let mut rest = data;
    // Frames: [session byte][u16 length][RequestHeader + body].
    while rest.len() >= 3 {
        let who = (rest[0] % 3) as usize;
        let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        let end = (3 + len).min(rest.len());
        let frame = &rest[3..end];
        rest = &rest[end..];
        let session_id = 0x100 + who as i64;
        if !state.sessions.contains_key(&session_id) {
            let (h, t) = (
                corral_server::proto::TxnHeader {
                    client_id: session_id,
                    cxid: 0,
                    zxid,
                    time: 0,
                    op: -10,
                },
                corral_server::tree::prepare::prepare_create_session(30_000),
            );
            log_and_replay(&mut state, &mut replica, TxnEntry { header: h, txn: t, digest: None });
            zxid += 1;
        }
        let r = &mut Reader::with_max_len(frame, MAX);
        let Ok(h) = RequestHeader::read(r) else { continue };
        let Ok(req) = Request::decode(h.op, &frame[r.position()..], MAX) else { continue };
        let auth = &auths[who];
        if corral_server::pipeline::reads::is_read(&req) {
            let asker = Asker {
                session_id,
                watcher: who as u64,
                auth,
                schemes: &schemes,
                skip_acl: false,
            };
            let _ = answer(&state.tree, &asker, &req, &mut watches);
            continue;
        }
        let (header, txn) = if matches!(req, Request::CloseSession) {
            let t = prepare_close_session(&state.tree, session_id, &cfg);
            let h = corral_server::proto::TxnHeader {
                client_id: session_id,
                cxid: h.xid,
                zxid,
                time: 0,
                op: t.opcode().code(),
            };
            (h, t)
        } else {
            let ctx = SessionContext { session_id, auth, local_session: false };
            prepare_txn(&state.tree, &ctx, &cfg, &req, h.xid, zxid, 0)
        };
        log_and_replay(&mut state, &mut replica, TxnEntry { header, txn, digest: None });
        zxid += 1;
    }
    assert_eq!(state.tree.digest(), replica.tree.digest(), "replay reaches the same tree");
});

fn log_and_replay(state: &mut State, replica: &mut State, mut entry: TxnEntry) {
    let _ = state.apply(&entry);
    entry.digest = Some(TxnDigest { version: 2, tree_digest: state.tree.digest() });
    let bytes = entry.encode();
    // Recovery reads a record back with the record's own length as the field limit.
    let back = TxnEntry::decode(&bytes, bytes.len()).expect("a logged txn decodes");
    assert_eq!(back, entry, "a logged txn decodes as it was encoded");
    let _ = replica.apply(&back);
    assert_eq!(replica.tree.digest(), state.tree.digest(), "replay keeps pace");
}
