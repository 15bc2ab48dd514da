//! The byte formats of the quorum and election ports, exactly as Apache ZooKeeper writes them
//! (reference §14 and §15), so that Corral and ZooKeeper servers can share an ensemble.
//!
//! * Quorum port: a stream of jute `QuorumPacket{int type, long zxid, buffer data,
//!   vector<Id> authinfo}` records with no extra framing. After a SNAP packet the leader writes
//!   the snapshot body (sessions + DataTree, [`crate::tree::zk_snapshot::write_body`]) and the
//!   jute string `"BenWasHere"` on the same stream.
//! * Election port: notifications, each an `int` length and a big-endian payload (version 2:
//!   44 bytes plus the config text; 28- and 40-byte forms from older servers are accepted).

use bytes::{BufMut, Bytes};

use crate::proto::{Id, Jute, JuteError, JuteWrite, Reader};

use super::{Sid, Zxid};

/// The protocol version learners and leaders announce (ZooKeeper 3.4+).
pub const PROTOCOL_VERSION: i32 = 0x10000;

/// The string a leader writes after a SNAP body.
pub const SNAP_SIGNATURE: &str = "BenWasHere";

/// Quorum packet types (`Leader.java` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PacketType {
    Request = 1,
    Proposal = 2,
    Ack = 3,
    Commit = 4,
    Ping = 5,
    Revalidate = 6,
    Sync = 7,
    Inform = 8,
    CommitAndActivate = 9,
    NewLeader = 10,
    FollowerInfo = 11,
    UpToDate = 12,
    Diff = 13,
    Trunc = 14,
    Snap = 15,
    ObserverInfo = 16,
    LeaderInfo = 17,
    AckEpoch = 18,
    InformAndActivate = 19,
}

impl PacketType {
    /// The type for a wire value.
    pub fn from_code(code: i32) -> Option<PacketType> {
        use PacketType::*;
        Some(match code {
            1 => Request,
            2 => Proposal,
            3 => Ack,
            4 => Commit,
            5 => Ping,
            6 => Revalidate,
            7 => Sync,
            8 => Inform,
            9 => CommitAndActivate,
            10 => NewLeader,
            11 => FollowerInfo,
            12 => UpToDate,
            13 => Diff,
            14 => Trunc,
            15 => Snap,
            16 => ObserverInfo,
            17 => LeaderInfo,
            18 => AckEpoch,
            19 => InformAndActivate,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One quorum packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPacket {
    pub kind: PacketType,
    /// The zxid field as written (-1 where ZooKeeper writes -1).
    pub zxid: i64,
    /// The data buffer: `None` is jute's null buffer (length -1), which ZooKeeper writes for
    /// packets without data; `Some` of an empty buffer is length 0 (a learner's PING reply
    /// with no sessions, which ZooKeeper's leader reads as an array and must not find null).
    pub data: Option<Bytes>,
    /// The authinfo vector: `None` is jute's null vector (ZooKeeper's packets but REQUEST),
    /// `Some` a (possibly empty) list of the client's ids (REQUEST).
    pub authinfo: Option<Vec<Id>>,
}

impl QuorumPacket {
    /// A packet without data.
    pub fn new(kind: PacketType, zxid: i64) -> Self {
        QuorumPacket { kind, zxid, data: None, authinfo: None }
    }

    /// A packet with data.
    pub fn with_data(kind: PacketType, zxid: i64, data: impl Into<Bytes>) -> Self {
        QuorumPacket { kind, zxid, data: Some(data.into()), authinfo: None }
    }

    /// The data (empty when null).
    pub fn payload(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        self.data.as_ref().unwrap_or(&EMPTY)
    }

    /// The data, owned (empty when null).
    pub fn into_payload(self) -> Bytes {
        self.data.unwrap_or_default()
    }

    /// The zxid as an unsigned zxid (packets whose zxid is -1 give `u64::MAX`).
    pub fn zxid(&self) -> Zxid {
        Zxid(self.zxid as u64)
    }

    /// Appends the jute encoding.
    pub fn write<B: BufMut>(&self, w: &mut B) {
        w.put_i32(self.kind.code());
        w.put_i64(self.zxid);
        w.put_buffer(self.data.as_deref());
        match &self.authinfo {
            Some(ids) => ids.write(w),
            None => w.put_i32(-1),
        }
    }

    /// The jute encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.payload().len());
        self.write(&mut out);
        out
    }

    /// Decodes one packet from the reader.
    pub fn read(r: &mut Reader<'_>) -> Result<QuorumPacket, JuteError> {
        let at = r.position();
        let code = r.read_i32()?;
        let kind = PacketType::from_code(code).ok_or(JuteError::InvalidValue {
            what: "quorum packet type",
            value: i64::from(code),
            offset: at,
        })?;
        let zxid = r.read_i64()?;
        let data = r.read_buffer_ref()?.map(Bytes::copy_from_slice);
        let mut probe = r.clone();
        let authinfo = if probe.read_i32()? == -1 {
            *r = probe;
            None
        } else {
            Some(Vec::<Id>::read(r)?)
        };
        Ok(QuorumPacket { kind, zxid, data, authinfo })
    }
}

/// `LearnerInfo{long serverid, int protocolVersion, long configVersion}`: the data of
/// FOLLOWERINFO and OBSERVERINFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnerInfo {
    pub server_id: i64,
    pub protocol_version: i32,
    pub config_version: i64,
}

impl LearnerInfo {
    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(20);
        b.put_i64(self.server_id);
        b.put_i32(self.protocol_version);
        b.put_i64(self.config_version);
        b.into()
    }

    /// Decodes; the 8-byte form of pre-3.4 learners (server id only) is accepted, and trailing
    /// bytes are ignored as ZooKeeper does.
    pub fn decode(buf: &[u8]) -> Result<LearnerInfo, JuteError> {
        let r = &mut Reader::new(buf);
        let server_id = r.read_i64()?;
        let protocol_version = if r.remaining() >= 4 { r.read_i32()? } else { 0 };
        let config_version = if r.remaining() >= 8 { r.read_i64()? } else { 0 };
        Ok(LearnerInfo { server_id, protocol_version, config_version })
    }
}

/// An `int` payload (LEADERINFO's protocol version, ACKEPOCH's current epoch).
pub fn encode_i32(v: i32) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

/// Reads an `int` payload.
pub fn decode_i32(buf: &[u8]) -> Result<i32, JuteError> {
    Reader::new(buf).read_i32()
}

/// REQUEST data: `long sessionId, int cxid, int type` followed by the raw request bytes; the
/// client's authenticated ids travel in the packet's `authinfo` (ZooKeeper's `Learner.request`),
/// so the leader checks ACLs against the ids of the client that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    pub session_id: i64,
    pub cxid: i32,
    pub op: i32,
    pub body: Bytes,
    /// The client connection's authenticated ids (not part of the data: the packet's authinfo).
    pub auth: Vec<Id>,
}

impl ForwardedRequest {
    /// The encoding.
    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(16 + self.body.len());
        b.put_i64(self.session_id);
        b.put_i32(self.cxid);
        b.put_i32(self.op);
        b.put_slice(&self.body);
        b.into()
    }

    /// Decodes.
    pub fn decode(buf: &[u8]) -> Result<ForwardedRequest, JuteError> {
        let r = &mut Reader::new(buf);
        let session_id = r.read_i64()?;
        let cxid = r.read_i32()?;
        let op = r.read_i32()?;
        Ok(ForwardedRequest {
            session_id,
            cxid,
            op,
            body: Bytes::copy_from_slice(&buf[16..]),
            auth: Vec::new(),
        })
    }

    /// The REQUEST packet a learner sends: the data, and the client's ids as authinfo.
    pub fn to_packet(&self) -> QuorumPacket {
        QuorumPacket {
            kind: PacketType::Request,
            zxid: -1,
            data: Some(self.encode()),
            // ZooKeeper's createSession requests carry no ids (a null vector); every other
            // request carries its connection's list, possibly empty.
            authinfo: (self.op != crate::proto::OpCode::CreateSession.code())
                .then(|| self.auth.clone()),
        }
    }

    /// Reads a REQUEST packet: the data, and the client's ids from its authinfo.
    pub fn from_packet(p: &QuorumPacket) -> Result<ForwardedRequest, JuteError> {
        let mut r = ForwardedRequest::decode(p.payload())?;
        r.auth = p.authinfo.clone().unwrap_or_default();
        Ok(r)
    }
}

/// A learner's PING reply data: repeated `long sessionId, int timeout`.
pub fn encode_touches(touches: &[(i64, i32)]) -> Bytes {
    let mut b = Vec::with_capacity(12 * touches.len());
    for (id, timeout) in touches {
        b.put_i64(*id);
        b.put_i32(*timeout);
    }
    b.into()
}

/// Decodes a PING reply's session touches (a trailing partial entry is an error).
pub fn decode_touches(buf: &[u8]) -> Result<Vec<(i64, i32)>, JuteError> {
    let r = &mut Reader::new(buf);
    let mut out = Vec::with_capacity(buf.len() / 12);
    while !r.is_empty() {
        out.push((r.read_i64()?, r.read_i32()?));
    }
    Ok(out)
}

/// REVALIDATE request data: `long sessionId, int timeout`.
pub fn encode_revalidate(session_id: i64, timeout: i32) -> Bytes {
    let mut b = Vec::with_capacity(12);
    b.put_i64(session_id);
    b.put_i32(timeout);
    b.into()
}

/// REVALIDATE reply data: `long sessionId, boolean valid`.
pub fn encode_revalidate_reply(session_id: i64, valid: bool) -> Bytes {
    let mut b = Vec::with_capacity(9);
    b.put_i64(session_id);
    b.put_bool_jute(valid);
    b.into()
}

/// Decodes a REVALIDATE request.
pub fn decode_revalidate(buf: &[u8]) -> Result<(i64, i32), JuteError> {
    let r = &mut Reader::new(buf);
    Ok((r.read_i64()?, r.read_i32()?))
}

/// Decodes a REVALIDATE reply.
pub fn decode_revalidate_reply(buf: &[u8]) -> Result<(i64, bool), JuteError> {
    let r = &mut Reader::new(buf);
    Ok((r.read_i64()?, r.read_bool()?))
}

/// Appends a SNAP payload to a stream: the snapshot body, then the signature string.
pub fn write_snap_payload<B: BufMut>(w: &mut B, body: &[u8]) {
    w.put_slice(body);
    w.put_ustring(SNAP_SIGNATURE);
}

/// Reads the SNAP payload that follows a SNAP packet on a stream: returns the body's bytes
/// (sessions + DataTree, ready for [`crate::tree::zk_snapshot::read_body`]) after checking the
/// signature that ends it.
pub fn read_snap_payload<'a>(r: &mut Reader<'a>, buf: &'a [u8]) -> Result<&'a [u8], JuteError> {
    let start = r.position();
    let mut probe = r.clone();
    crate::tree::zk_snapshot::read_body(&mut probe, crate::tree::TreeOptions::default()).map_err(
        |e| match e {
            // The input ended inside the body: a stream reader waits for more.
            crate::tree::snapshot::SnapshotError::Jute(t @ JuteError::Truncated { .. }) => t,
            _ => JuteError::InvalidValue { what: "snapshot body", value: 0, offset: start },
        },
    )?;
    let end = probe.position();
    let sig_at = end;
    let sig = probe.read_ustring()?;
    if sig != SNAP_SIGNATURE {
        return Err(JuteError::InvalidValue {
            what: "snapshot signature",
            value: 0,
            offset: sig_at,
        });
    }
    *r = probe;
    Ok(&buf[start..end])
}

/// The first message on an election connection, from the server that dialled
/// (`QuorumCnxManager.initiateConnection`): `long protocolVersion, long sid, int length,
/// address bytes` ("host:port"; several separated by '|' with protocol version 2), or, from a
/// pre-3.5 server, the sid alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionHello {
    /// -65536 (version 1), -65535 (version 2, multi-address), or `None` for the bare sid.
    pub protocol: Option<i64>,
    pub sid: i64,
    /// The sender's election address(es) as text.
    pub address: String,
}

/// Protocol version 1 of the election handshake (ZooKeeper 3.5+).
pub const ELECTION_PROTOCOL_V1: i64 = -65536;
/// Protocol version 2 (multi-address, ZooKeeper 3.6+ with `multiAddress.enabled`).
pub const ELECTION_PROTOCOL_V2: i64 = -65535;
/// The longest address text accepted in an election handshake.
pub const ELECTION_ADDRESS_MAX: usize = 2048;

impl ElectionHello {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(20 + self.address.len());
        match self.protocol {
            Some(v) => {
                h.put_i64(v);
                h.put_i64(self.sid);
                h.put_i32(self.address.len() as i32);
                h.put_slice(self.address.as_bytes());
            }
            None => h.put_i64(self.sid),
        }
        h
    }

    /// Reads one from a stream; an unknown protocol version or an oversized address is an
    /// error (`InvalidData`) before anything more is read.
    pub fn read_from(r: &mut impl std::io::Read) -> std::io::Result<ElectionHello> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let mut b8 = [0u8; 8];
        r.read_exact(&mut b8)?;
        let first = i64::from_be_bytes(b8);
        if first >= 0 {
            return Ok(ElectionHello { protocol: None, sid: first, address: String::new() });
        }
        if first != ELECTION_PROTOCOL_V1 && first != ELECTION_PROTOCOL_V2 {
            return Err(bad(format!("election header protocol version {first}")));
        }
        r.read_exact(&mut b8)?;
        let sid = i64::from_be_bytes(b8);
        let mut b4 = [0u8; 4];
        r.read_exact(&mut b4)?;
        let len = i32::from_be_bytes(b4);
        if len < 0 || len as usize > ELECTION_ADDRESS_MAX {
            return Err(bad(format!("election header address of {len} bytes")));
        }
        let mut a = vec![0u8; len as usize];
        r.read_exact(&mut a)?;
        let address =
            String::from_utf8(a).map_err(|_| bad("election header address not UTF-8".into()))?;
        Ok(ElectionHello { protocol: Some(first), sid, address })
    }
}

/// A peer's state as election notifications carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    Looking = 0,
    Following = 1,
    Leading = 2,
    Observing = 3,
}

impl ServerState {
    /// The state for a wire value.
    pub fn from_code(code: i32) -> Option<ServerState> {
        Some(match code {
            0 => ServerState::Looking,
            1 => ServerState::Following,
            2 => ServerState::Leading,
            3 => ServerState::Observing,
            _ => return None,
        })
    }
}

/// The notification version this implementation writes.
pub const NOTIFICATION_VERSION: i32 = 2;

/// One FastLeaderElection notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The sender's state.
    pub state: ServerState,
    /// The proposed leader's sid.
    pub leader: i64,
    /// The proposed leader's last zxid.
    pub zxid: i64,
    /// The sender's election epoch (logical clock).
    pub election_epoch: i64,
    /// The proposed leader's current epoch.
    pub peer_epoch: i64,
    /// The format version (0 for the 28-byte form, 1 for 40 bytes, 2 with config).
    pub version: i32,
    /// The dynamic config text (version 2 only).
    pub config: Bytes,
}

impl Notification {
    /// The payload (without the length prefix of the election connection).
    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(44 + self.config.len());
        b.put_i32(self.state as i32);
        b.put_i64(self.leader);
        b.put_i64(self.zxid);
        b.put_i64(self.election_epoch);
        b.put_i64(self.peer_epoch);
        b.put_i32(NOTIFICATION_VERSION);
        b.put_i32(self.config.len() as i32);
        b.put_slice(&self.config);
        b.into()
    }

    /// Decodes a payload of any accepted form. A 28-byte notification has no peer epoch: it is
    /// taken from the zxid, as ZooKeeper does.
    pub fn decode(buf: &[u8]) -> Result<Notification, JuteError> {
        if buf.len() < 28 {
            return Err(JuteError::Truncated { offset: 0, needed: 28, available: buf.len() });
        }
        let r = &mut Reader::new(buf);
        let code = r.read_i32()?;
        let state = ServerState::from_code(code).ok_or(JuteError::InvalidValue {
            what: "server state",
            value: i64::from(code),
            offset: 0,
        })?;
        let leader = r.read_i64()?;
        let zxid = r.read_i64()?;
        let election_epoch = r.read_i64()?;
        if buf.len() < 40 {
            return Ok(Notification {
                state,
                leader,
                zxid,
                election_epoch,
                peer_epoch: zxid >> 32,
                version: 0,
                config: Bytes::new(),
            });
        }
        let peer_epoch = r.read_i64()?;
        let version = r.read_i32()?;
        let mut config = Bytes::new();
        if version > 1 && r.remaining() >= 4 {
            let len = r.read_i32()?;
            if len < 0 || len as usize > r.remaining() || len > 512 * 1024 {
                return Err(JuteError::InvalidValue {
                    what: "notification config length",
                    value: i64::from(len),
                    offset: 40,
                });
            }
            config = Bytes::copy_from_slice(&buf[44..44 + len as usize]);
        }
        Ok(Notification { state, leader, zxid, election_epoch, peer_epoch, version, config })
    }

    /// The proposed leader as a sid (None for the "no leader" value non-voters propose).
    pub fn leader_sid(&self) -> Option<Sid> {
        u64::try_from(self.leader).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_packet_layout_is_zookeepers() {
        let p = QuorumPacket::with_data(PacketType::Proposal, 0x1_0000_0002, vec![7u8, 8]);
        let b = p.encode();
        assert_eq!(
            b,
            [
                0, 0, 0, 2, // type
                0, 0, 0, 1, 0, 0, 0, 2, // zxid
                0, 0, 0, 2, 7, 8, // data
                0xff, 0xff, 0xff,
                0xff, // authinfo: null, as ZooKeeper's `new QuorumPacket(t, z, d, null)`
            ]
        );
        assert_eq!(QuorumPacket::read(&mut Reader::new(&b)).unwrap(), p);
        // No data is written as a null buffer, as ZooKeeper's `new QuorumPacket(t, z, null, null)`
        // does; empty data and an empty authinfo vector stay apart from null ones.
        let uptodate = QuorumPacket::new(PacketType::UpToDate, -1);
        let b = uptodate.encode();
        assert_eq!(&b[12..20], &[0xff; 8]);
        assert_eq!(QuorumPacket::read(&mut Reader::new(&b)).unwrap(), uptodate);
        let empty = QuorumPacket {
            data: Some(Bytes::new()),
            authinfo: Some(Vec::new()),
            ..QuorumPacket::new(PacketType::Ping, 0)
        };
        let b = empty.encode();
        assert_eq!(&b[12..20], &[0; 8]);
        assert_eq!(QuorumPacket::read(&mut Reader::new(&b)).unwrap(), empty);
    }

    #[test]
    fn unknown_packet_type_is_an_error() {
        let mut b = QuorumPacket::new(PacketType::Ping, 0).encode();
        b[3] = 99;
        assert!(QuorumPacket::read(&mut Reader::new(&b)).is_err());
    }

    #[test]
    fn learner_info_and_payloads_round_trip() {
        let li =
            LearnerInfo { server_id: 3, protocol_version: PROTOCOL_VERSION, config_version: 0 };
        let b = li.encode();
        assert_eq!(b.len(), 20);
        assert_eq!(LearnerInfo::decode(&b).unwrap(), li);
        assert_eq!(LearnerInfo::decode(&b[..8]).unwrap().server_id, 3);
        assert_eq!(decode_i32(&encode_i32(-1)).unwrap(), -1);
        let req = ForwardedRequest {
            session_id: 9,
            cxid: 4,
            op: 1,
            body: Bytes::from_static(b"xy"),
            auth: vec![Id { scheme: "digest".into(), id: "u:h".into() }],
        };
        // The data alone carries no ids; the packet carries them as its authinfo.
        assert_eq!(
            ForwardedRequest::decode(&req.encode()).unwrap(),
            ForwardedRequest { auth: Vec::new(), ..req.clone() }
        );
        let packet = req.to_packet();
        assert_eq!(packet.authinfo.as_ref(), Some(&req.auth));
        let wire = packet.encode();
        let back = QuorumPacket::read(&mut Reader::new(&wire)).unwrap();
        assert_eq!(ForwardedRequest::from_packet(&back).unwrap(), req);
        let t = vec![(1, 3000), (2, 4000)];
        assert_eq!(decode_touches(&encode_touches(&t)).unwrap(), t);
        assert_eq!(decode_revalidate(&encode_revalidate(5, 30)).unwrap(), (5, 30));
        assert_eq!(decode_revalidate_reply(&encode_revalidate_reply(5, true)).unwrap(), (5, true));
    }

    #[test]
    fn notification_v2_layout_and_old_forms() {
        let n = Notification {
            state: ServerState::Looking,
            leader: 2,
            zxid: 0x3_0000_0005,
            election_epoch: 7,
            peer_epoch: 3,
            version: 2,
            config: Bytes::from_static(b"version=0"),
        };
        let b = n.encode();
        assert_eq!(b.len(), 44 + 9);
        assert_eq!(&b[0..4], &[0, 0, 0, 0]);
        assert_eq!(&b[4..12], &2i64.to_be_bytes());
        assert_eq!(&b[28..36], &3i64.to_be_bytes());
        assert_eq!(&b[36..40], &2i32.to_be_bytes());
        assert_eq!(&b[40..44], &9i32.to_be_bytes());
        assert_eq!(Notification::decode(&b).unwrap(), n);
        // 40 bytes: version 1, no config.
        let v1 = Notification::decode(&b[..40]).unwrap();
        assert_eq!((v1.peer_epoch, v1.config.len()), (3, 0));
        // 28 bytes: the peer epoch comes from the zxid.
        let v0 = Notification::decode(&b[..28]).unwrap();
        assert_eq!((v0.peer_epoch, v0.version), (3, 0));
        assert!(Notification::decode(&b[..27]).is_err());
    }

    #[test]
    fn snap_payload_is_body_then_signature() {
        let tree = crate::tree::DataTree::default();
        let mut body = Vec::new();
        crate::tree::zk_snapshot::write_body(&mut body, &tree, &[(7, 3000)]).unwrap();
        let mut stream = QuorumPacket::new(PacketType::Snap, 5).encode();
        write_snap_payload(&mut stream, &body);
        QuorumPacket::new(PacketType::NewLeader, 1 << 32).write(&mut stream);
        let r = &mut Reader::new(&stream);
        assert_eq!(QuorumPacket::read(r).unwrap().kind, PacketType::Snap);
        assert_eq!(read_snap_payload(r, &stream).unwrap(), &body[..]);
        assert_eq!(QuorumPacket::read(r).unwrap().kind, PacketType::NewLeader);
        assert!(r.is_empty());
    }
}
