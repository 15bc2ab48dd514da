//! The `reconfig` request (ZooKeeper 3.5+ dynamic membership) as a leader judges it, in the
//! order of ZooKeeper 3.8's PrepRequestProcessor, so that a bad request gets ZooKeeper's error:
//! RECONFIGDISABLED without `reconfigEnabled`, UNIMPLEMENTED standalone, BADVERSION for a
//! stale `fromConfig`, BADARGUMENTS for a membership that does not parse or leaves too few
//! voters, NOAUTH without WRITE on `/zookeeper/config` (only the super user has it).
//!
//! Activating a new membership (COMMITANDACTIVATE, INFORMANDACTIVATE, the dynamic config
//! file) is not implemented yet: a request that passes every check is answered UNIMPLEMENTED
//! and logged, and the membership stays the configured one.

use std::collections::BTreeMap;

use crate::config::{LearnerType, Location, QuorumServer};
use crate::proto::{ErrorCode, ReconfigRequest};

/// A membership: servers by id, and the configuration version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub servers: BTreeMap<u64, QuorumServer>,
    pub version: u64,
}

impl Membership {
    /// Parses the text of `/zookeeper/config` (`server.N=...` lines, then `version=<hex>`).
    pub fn parse(text: &str) -> Option<Membership> {
        let mut servers = BTreeMap::new();
        let mut version = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=')?;
            if key == "version" {
                version = u64::from_str_radix(value.trim(), 16).ok()?;
            } else {
                let id = key.strip_prefix("server.")?.parse().ok()?;
                servers.insert(id, QuorumServer::parse(id, value, Location::SystemProperty).ok()?);
            }
        }
        Some(Membership { servers, version })
    }

    /// The voting members' ids.
    pub fn voters(&self) -> Vec<u64> {
        self.servers
            .values()
            .filter(|s| s.learner_type == LearnerType::Participant)
            .map(|s| s.id)
            .collect()
    }
}

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

/// Judges a reconfig request for a leader whose membership is `current` (`None`: a standalone
/// server), after the session check. `may_write_config` says whether the client has WRITE on
/// `/zookeeper/config` (or `skipACL`). Returns the error the client gets; a request that passes
/// every check gets UNIMPLEMENTED (activation is not implemented yet).
pub fn judge(
    req: &ReconfigRequest,
    enabled: bool,
    current: Option<&Membership>,
    may_write_config: bool,
) -> ErrorCode {
    if !enabled {
        return ErrorCode::ReconfigDisabled;
    }
    let Some(current) = current else { return ErrorCode::Unimplemented };
    if req.cur_config_id != -1 && req.cur_config_id as u64 != current.version {
        return ErrorCode::BadVersion;
    }
    let next = match next_membership(req, current) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // standaloneEnabled (the default): at least two voters.
    if next.voters().len() < 2 {
        return ErrorCode::BadArguments;
    }
    if !may_write_config {
        return ErrorCode::NoAuth;
    }
    tracing::warn!(
        voters = ?next.voters(),
        servers = next.servers.len(),
        "a valid reconfig request: dynamic reconfiguration is not implemented yet (UNIMPLEMENTED)"
    );
    ErrorCode::Unimplemented
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

    #[test]
    fn parses_the_config_text() {
        let m = current();
        assert_eq!((m.servers.len(), m.version, m.voters()), (3, 0x1_0000_0000, vec![1, 2, 3]));
        assert!(Membership::parse("server.x=1").is_none());
    }

    // kazoo's TestReconfig: test_bad_input, test_no_super_auth, and the order of the checks.
    #[test]
    fn errors_in_zookeepers_order() {
        let m = current();
        let observer = "server.999=0.0.0.0:1234:2345:observer;3456";
        let j = |s| req(Some(s), None, None);
        assert_eq!(judge(&j(observer), false, Some(&m), true), ErrorCode::ReconfigDisabled);
        assert_eq!(judge(&j(observer), true, None, true), ErrorCode::Unimplemented);
        let stale = ReconfigRequest { cur_config_id: 5, ..j(observer) };
        assert_eq!(judge(&stale, true, Some(&m), true), ErrorCode::BadVersion);
        assert_eq!(judge(&j("some thing"), true, Some(&m), false), ErrorCode::BadArguments);
        assert_eq!(judge(&j("server.9=h:1:2"), true, Some(&m), true), ErrorCode::BadArguments);
        let dup = "server.9=127.0.0.1:2888:4000:observer;5000";
        assert_eq!(judge(&j(dup), true, Some(&m), true), ErrorCode::BadArguments);
        assert_eq!(
            judge(&req(None, Some("1,2"), None), true, Some(&m), true),
            ErrorCode::BadArguments,
            "one voter left"
        );
        assert_eq!(
            judge(&req(None, Some("x"), None), true, Some(&m), true),
            ErrorCode::BadArguments
        );
        assert_eq!(judge(&j(observer), true, Some(&m), false), ErrorCode::NoAuth);
        assert_eq!(judge(&j(observer), true, Some(&m), true), ErrorCode::Unimplemented);
        let fresh = ReconfigRequest { cur_config_id: 0x1_0000_0000, ..j(observer) };
        assert_eq!(judge(&fresh, true, Some(&m), true), ErrorCode::Unimplemented);
        let members = "server.1=127.0.0.1:2888:3888;2181,server.2=127.0.0.1:2889:3889;2182";
        assert_eq!(
            judge(&req(None, None, Some(members)), true, Some(&m), true),
            ErrorCode::Unimplemented
        );
        assert_eq!(
            judge(&req(None, None, Some("server.1=bad")), true, Some(&m), true),
            ErrorCode::BadArguments
        );
    }
}
