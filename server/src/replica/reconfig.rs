//! The `reconfig` request (ZooKeeper 3.5+ dynamic membership) as a leader judges it, in the
//! order of ZooKeeper 3.8's PrepRequestProcessor, so that a bad request gets ZooKeeper's error:
//! RECONFIGDISABLED without `reconfigEnabled`, UNIMPLEMENTED standalone, RECONFIGINPROGRESS
//! while another reconfig is not committed yet, BADVERSION for a stale `fromConfig`,
//! BADARGUMENTS for a membership that does not parse or leaves too few voters,
//! NEWCONFIGNOQUORUM when a quorum of the new voters is not connected and synced, NOAUTH
//! without WRITE on `/zookeeper/config` (only the super user has it). A request that passes
//! gets the next membership; the leader proposes it as a reconfig txn (see [`crate::zab::peer`]
//! for its activation).

use std::collections::BTreeMap;

use crate::config::{Location, QuorumServer};
use crate::proto::{ErrorCode, ReconfigRequest};
pub use crate::zab::Membership;

/// ZooKeeper's `StringUtils.split`: split on `sep`, trim, drop empty pieces.
fn split(s: &str, sep: char) -> Vec<&str> {
    s.split(sep).map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// Java's `Long.parseLong` for the ids written in a request.
fn parse_id(s: &str) -> Result<u64, ErrorCode> {
    s.trim().parse::<u64>().map_err(|_| ErrorCode::BadArguments)
}

/// A server of `next` that has an address `s` also has (ZooKeeper's `checkAddressDuplicate`).
fn duplicates(s: &QuorumServer, next: &BTreeMap<u64, QuorumServer>) -> bool {
    let ours: Vec<(String, u16)> = s
        .addresses
        .iter()
        .flat_map(|a| [(a.host.clone(), a.quorum_port), (a.host.clone(), a.election_port)])
        .collect();
    next.values().filter(|o| o.id != s.id).any(|o| {
        o.addresses.iter().any(|a| {
            ours.contains(&(a.host.clone(), a.quorum_port))
                || ours.contains(&(a.host.clone(), a.election_port))
        })
    })
}

/// The membership a request asks for, from `current`: non-incremental (`newMembers`,
/// lines separated by newlines or commas) or incremental (`leaving` ids, `joining`
/// `server.N=spec` entries, comma separated).
fn next_membership(req: &ReconfigRequest, current: &Membership) -> Result<Membership, ErrorCode> {
    let mut servers = BTreeMap::new();
    if let Some(members) = &req.new_members {
        for line in split(&members.replace(',', "\n"), '\n') {
            let (key, value) = line.split_once('=').ok_or(ErrorCode::BadArguments)?;
            let key = key.trim();
            if key == "version" {
                continue;
            }
            let id = parse_id(key.strip_prefix("server.").ok_or(ErrorCode::BadArguments)?)?;
            let s = QuorumServer::parse(id, value.trim(), Location::SystemProperty)
                .map_err(|_| ErrorCode::BadArguments)?;
            servers.insert(id, s);
        }
    } else {
        servers = current.servers.clone();
        if let Some(leaving) = &req.leaving_servers {
            for id in split(leaving, ',') {
                servers.remove(&parse_id(id)?);
            }
        }
        if let Some(joining) = &req.joining_servers {
            for joiner in split(joining, ',') {
                let parts = split(joiner, '=');
                let [key, value] = parts.as_slice() else { return Err(ErrorCode::BadArguments) };
                let id = parse_id(&key[key.rfind('.').map_or(0, |i| i + 1)..])?;
                let s = QuorumServer::parse(id, value, Location::SystemProperty)
                    .map_err(|_| ErrorCode::BadArguments)?;
                // "each server should have 3 ports specified"
                if s.client_address.is_none() || duplicates(&s, &servers) {
                    return Err(ErrorCode::BadArguments);
                }
                servers.insert(id, s);
            }
        }
    }
    Ok(Membership { servers, version: current.version })
}

/// What the leader knows when it judges a reconfig request.
pub struct Judging<'a> {
    /// `reconfigEnabled`.
    pub enabled: bool,
    /// The active membership (`None`: a standalone server).
    pub current: Option<&'a Membership>,
    /// A reconfig is proposed and not committed yet.
    pub in_progress: bool,
    /// The client has WRITE on `/zookeeper/config` (or `skipACL`).
    pub may_write_config: bool,
}

/// Judges a reconfig request for a leader, after the session check. `synced` says whether a
/// quorum of a membership's voters is connected and synced with the leader. Returns the next
/// membership (its version still the current one's: the txn's zxid becomes its version) or
/// the error the client gets.
pub fn judge(
    req: &ReconfigRequest,
    j: &Judging<'_>,
    synced: impl FnOnce(&Membership) -> bool,
) -> Result<Membership, ErrorCode> {
    if !j.enabled {
        return Err(ErrorCode::ReconfigDisabled);
    }
    let Some(current) = j.current else { return Err(ErrorCode::Unimplemented) };
    if j.in_progress {
        return Err(ErrorCode::ReconfigInProgress);
    }
    if req.cur_config_id != -1 && req.cur_config_id as u64 != current.version {
        return Err(ErrorCode::BadVersion);
    }
    let next = next_membership(req, current)?;
    // standaloneEnabled (the default): at least two voters.
    if next.voters().len() < 2 {
        return Err(ErrorCode::BadArguments);
    }
    if !synced(&next) {
        return Err(ErrorCode::NewConfigNoQuorum);
    }
    if !j.may_write_config {
        return Err(ErrorCode::NoAuth);
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Membership {
        Membership::parse(
            "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
             server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182\n\
             server.3=127.0.0.1:2890:3890:participant;0.0.0.0:2183\nversion=100000000",
        )
        .unwrap()
    }

    fn req(joining: Option<&str>, leaving: Option<&str>, new: Option<&str>) -> ReconfigRequest {
        ReconfigRequest {
            joining_servers: joining.map(str::to_owned),
            leaving_servers: leaving.map(str::to_owned),
            new_members: new.map(str::to_owned),
            cur_config_id: -1,
        }
    }

    fn judged(
        r: &ReconfigRequest,
        enabled: bool,
        current: Option<&Membership>,
        may_write: bool,
    ) -> Result<Membership, ErrorCode> {
        let j = Judging { enabled, current, in_progress: false, may_write_config: may_write };
        judge(r, &j, |_| true)
    }

    fn code(r: Result<Membership, ErrorCode>) -> ErrorCode {
        r.err().unwrap_or(ErrorCode::Ok)
    }

    // kazoo's TestReconfig: test_bad_input, test_no_super_auth, and the order of the checks.
    #[test]
    fn errors_in_zookeepers_order() {
        let m = current();
        let observer = "server.999=0.0.0.0:1234:2345:observer;3456";
        let j = |s| req(Some(s), None, None);
        let c = |r: &ReconfigRequest, en, cur, w| code(judged(r, en, cur, w));
        assert_eq!(c(&j(observer), false, Some(&m), true), ErrorCode::ReconfigDisabled);
        assert_eq!(c(&j(observer), true, None, true), ErrorCode::Unimplemented);
        let busy =
            Judging { enabled: true, current: Some(&m), in_progress: true, may_write_config: true };
        assert_eq!(code(judge(&j("some thing"), &busy, |_| true)), ErrorCode::ReconfigInProgress);
        let stale = ReconfigRequest { cur_config_id: 5, ..j(observer) };
        assert_eq!(c(&stale, true, Some(&m), true), ErrorCode::BadVersion);
        assert_eq!(c(&j("some thing"), true, Some(&m), false), ErrorCode::BadArguments);
        assert_eq!(c(&j("server.9=h:1:2"), true, Some(&m), true), ErrorCode::BadArguments);
        let dup = "server.9=127.0.0.1:2888:4000:observer;5000";
        assert_eq!(c(&j(dup), true, Some(&m), true), ErrorCode::BadArguments);
        assert_eq!(
            c(&req(None, Some("1,2"), None), true, Some(&m), true),
            ErrorCode::BadArguments,
            "one voter left"
        );
        assert_eq!(c(&req(None, Some("x"), None), true, Some(&m), true), ErrorCode::BadArguments);
        let open = Judging {
            enabled: true,
            current: Some(&m),
            in_progress: false,
            may_write_config: false,
        };
        assert_eq!(
            code(judge(&j(observer), &open, |_| false)),
            ErrorCode::NewConfigNoQuorum,
            "no quorum of the new voters synced comes before the ACL"
        );
        assert_eq!(c(&j(observer), true, Some(&m), false), ErrorCode::NoAuth);
        let next = judged(&j(observer), true, Some(&m), true).unwrap();
        assert_eq!(next.observers(), [999].into());
        assert_eq!(next.voters(), [1, 2, 3].into());
        assert_eq!(next.version, m.version, "the txn's zxid becomes the version");
        let fresh = ReconfigRequest { cur_config_id: 0x1_0000_0000, ..j(observer) };
        assert!(judged(&fresh, true, Some(&m), true).is_ok());
        let members = "server.1=127.0.0.1:2888:3888;2181,server.2=127.0.0.1:2889:3889;2182";
        let two = judged(&req(None, None, Some(members)), true, Some(&m), true).unwrap();
        assert_eq!(two.voters(), [1, 2].into());
        let leave = judged(&req(None, Some("3"), None), true, Some(&m), true).unwrap();
        assert_eq!(leave.servers.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            c(&req(None, None, Some("server.1=bad")), true, Some(&m), true),
            ErrorCode::BadArguments
        );
    }
}
