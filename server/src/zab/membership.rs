//! A membership as dynamic reconfiguration changes it: the text of `/zookeeper/config`
//! (ZooKeeper's `QuorumVerifier.toString`: `server.N=...` lines, then `version=<hex>`), and
//! the reconfig txns that carry a new one.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::config::{LearnerType, Location, QuorumServer};
use crate::proto::OpCode;

use super::Sid;

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

    /// Parses a config text given as bytes (`None` if empty or not a membership).
    pub fn parse_bytes(text: &[u8]) -> Option<Membership> {
        std::str::from_utf8(text).ok().filter(|t| !t.trim().is_empty()).and_then(Membership::parse)
    }

    /// The voting members' ids.
    pub fn voters(&self) -> BTreeSet<Sid> {
        self.of_type(LearnerType::Participant)
    }

    /// The observers' ids.
    pub fn observers(&self) -> BTreeSet<Sid> {
        self.of_type(LearnerType::Observer)
    }

    fn of_type(&self, t: LearnerType) -> BTreeSet<Sid> {
        self.servers.values().filter(|s| s.learner_type == t).map(|s| s.id).collect()
    }

    /// The text, as ZooKeeper writes it: a `server.N=` line per server (by id), then
    /// `version=<hex>` without a newline.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in self.servers.values() {
            out.push_str(&format!("server.{}={}\n", s.id, s.config_value()));
        }
        out.push_str(&format!("version={:x}", self.version));
        out
    }
}

/// The same config text with another version (ZOOKEEPER-1783: a leader gives the initial
/// configuration, version 0, the version of its epoch).
pub fn with_version(text: &[u8], version: u64) -> Bytes {
    let text = String::from_utf8_lossy(text);
    let mut out: String = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("version="))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    out.push_str(&format!("version={version:x}"));
    Bytes::from(out)
}

/// The configuration text a txn carries if it is a reconfig txn (a header of type reconfig,
/// then a SetDataTxn on `/zookeeper/config`); `None` for any other txn.
pub fn reconfig_text(txn: &[u8]) -> Option<Bytes> {
    // TxnHeader: clientId (8), cxid (4), zxid (8), time (8), type (4).
    const TYPE_AT: usize = 28;
    let ty = i32::from_be_bytes(txn.get(TYPE_AT..TYPE_AT + 4)?.try_into().ok()?);
    if ty != OpCode::Reconfig.code() {
        return None;
    }
    let mut at = TYPE_AT + 4;
    let field = |at: &mut usize| -> Option<&[u8]> {
        let len = i32::from_be_bytes(txn.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4;
        let len = usize::try_from(len).ok()?;
        let f = txn.get(*at..*at + len)?;
        *at += len;
        Some(f)
    };
    let _path = field(&mut at)?;
    let data = field(&mut at)?;
    Some(Bytes::copy_from_slice(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Jute, SetDataTxn, Txn, TxnHeader};

    #[test]
    fn parses_renders_and_revises_the_text() {
        let text = "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
                    server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182\n\
                    server.5=127.0.0.1:2890:3890:observer;0.0.0.0:2183\nversion=100000000";
        let m = Membership::parse(text).unwrap();
        assert_eq!(m.version, 0x1_0000_0000);
        assert_eq!(m.voters(), BTreeSet::from([1, 2]));
        assert_eq!(m.observers(), BTreeSet::from([5]));
        assert_eq!(m.text(), text);
        assert!(Membership::parse("server.x=1").is_none());
        assert!(Membership::parse_bytes(b"").is_none());
        let v = with_version(text.as_bytes(), 0x2_0000_0003);
        assert!(v.ends_with(b"\nversion=200000003"));
        assert_eq!(Membership::parse_bytes(&v).unwrap().servers, m.servers);
        assert_eq!(
            &with_version(b"server.1=a:1:2:participant\nversion=0", 5)[..],
            b"server.1=a:1:2:participant\nversion=5"
        );
    }

    #[test]
    fn finds_the_config_of_a_reconfig_txn_only() {
        let encode = |op: OpCode, txn: Txn| {
            let hdr =
                TxnHeader { client_id: 7, cxid: 1, zxid: 0x1_0000_0002, time: 5, op: op.code() };
            let mut b = Vec::new();
            hdr.write(&mut b);
            txn.write(&mut b);
            b.extend_from_slice(&[0; 12]); // a digest after it
            b
        };
        let set = SetDataTxn {
            path: "/zookeeper/config".into(),
            data: b"server.1=x".to_vec().into(),
            version: -1,
        };
        let r = encode(OpCode::Reconfig, Txn::Reconfig(set.clone()));
        assert_eq!(reconfig_text(&r).as_deref(), Some(&b"server.1=x"[..]));
        assert_eq!(reconfig_text(&encode(OpCode::SetData, Txn::SetData(set))), None);
        assert_eq!(reconfig_text(&r[..40]), None, "cut short");
        assert_eq!(reconfig_text(&[]), None);
    }
}
