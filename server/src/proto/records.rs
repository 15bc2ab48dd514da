//! Every fixed-layout jute record of the client protocol, the data model and the txn log
//! (reference §4 and §13), as plain structs whose field order is the wire order.
//!
//! Records whose layout depends on what follows (ConnectRequest's optional readOnly byte,
//! CreateTxn's old form without parentCVersion, CloseSessionTxn before 3.6) are written by hand
//! at the end of this file. Multi requests, responses and txns are enums in sibling modules.

use bytes::BufMut;

use super::jute::{Data, Jute, JuteError, JuteWrite, Reader};

/// Declares a jute record: a struct plus its [`Jute`] impl reading and writing the fields in
/// declaration order (and, in tests, a proptest `Arbitrary` impl for round-trip tests).
macro_rules! record {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl Jute for $name {
            const MIN_SIZE: usize = 0 $(+ <$ty as Jute>::MIN_SIZE)*;

            fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
                Ok(Self { $($field: <$ty as Jute>::read(r)?,)* })
            }

            fn write<B: BufMut>(&self, w: &mut B) {
                $(Jute::write(&self.$field, w);)*
            }
        }

        #[cfg(test)]
        impl proptest::arbitrary::Arbitrary for $name {
            type Parameters = ();
            type Strategy = proptest::strategy::BoxedStrategy<Self>;
            #[allow(unused_parens)]
            fn arbitrary_with(_: ()) -> Self::Strategy {
                use proptest::prelude::*;
                ($(any::<$ty>()),*).prop_map(|($($field),*)| Self { $($field),* }).boxed()
            }
        }
    };
}

impl Jute for Option<String> {
    const MIN_SIZE: usize = 4;
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        r.read_ustring_opt()
    }
    fn write<B: BufMut>(&self, w: &mut B) {
        match self {
            None => w.put_i32(-1),
            Some(s) => w.put_ustring(s),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// org.apache.zookeeper.data

record! {
    /// An identity: `scheme:id` (world:anyone, digest:user:hash, ip:10.0.0.0/8...).
    pub struct Id {
        pub scheme: String,
        pub id: String,
    }
}

impl Id {
    /// Build an id from string slices.
    pub fn new(scheme: &str, id: &str) -> Self {
        Id { scheme: scheme.to_owned(), id: id.to_owned() }
    }
}

record! {
    /// One access-control entry: permission bits granted to an identity.
    pub struct Acl {
        pub perms: i32,
        pub id: Id,
    }
}

impl Acl {
    /// Build an entry.
    pub fn new(perms: i32, scheme: &str, id: &str) -> Self {
        Acl { perms, id: Id::new(scheme, id) }
    }

    /// `ZooDefs.Ids.OPEN_ACL_UNSAFE`: everything for everyone.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(super::perms::ALL, "world", "anyone")]
    }

    /// `ZooDefs.Ids.READ_ACL_UNSAFE`: read for everyone.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(super::perms::READ, "world", "anyone")]
    }

    /// `ZooDefs.Ids.CREATOR_ALL_ACL`: everything for the creator's authenticated ids.
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl::new(super::perms::ALL, "auth", "")]
    }
}

record! {
    /// The client-visible node status (68 bytes).
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }
}

record! {
    /// The node status as stored in snapshots (60 bytes); cversion counts child creations.
    pub struct StatPersisted {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub pzxid: i64,
    }
}

record! {
    /// One entry of a whoAmI answer (3.7+).
    pub struct ClientInfo {
        pub auth_scheme: String,
        pub user: String,
    }
}

// ---------------------------------------------------------------------------------------------
// org.apache.zookeeper.proto: headers and session records

record! {
    /// Precedes every client request after the handshake.
    pub struct RequestHeader {
        pub xid: i32,
        pub op: i32,
    }
}

record! {
    /// Precedes every server reply and notification.
    pub struct ReplyHeader {
        pub xid: i32,
        pub zxid: i64,
        pub err: i32,
    }
}

record! {
    /// Precedes each op of a multi request or result; `done` marks the end.
    pub struct MultiHeader {
        pub op: i32,
        pub done: bool,
        pub err: i32,
    }
}

record! {
    /// addAuthInfo (opcode 100, xid -4).
    pub struct AuthPacket {
        pub auth_type: i32,
        pub scheme: String,
        pub auth: Data,
    }
}

record! {
    /// Watch re-registration on reconnect (opcode 101).
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

record! {
    /// Watch re-registration including persistent watches (opcode 105, 3.6+).
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

record! {
    /// A watch notification body (sent with xid -1).
    pub struct WatcherEvent {
        pub event_type: i32,
        pub state: i32,
        pub path: String,
    }
}

record! {
    /// An error body: multi error results and addWatch's reply.
    pub struct ErrorResponse {
        pub err: i32,
    }
}

record! {
    /// GetSASLRequest / SetSASLRequest / SetSASLResponse.
    pub struct SaslToken {
        pub token: Data,
    }
}

// ---------------------------------------------------------------------------------------------
// org.apache.zookeeper.proto: requests

record! {
    /// create (1), create2 (15), createContainer (19).
    pub struct CreateRequest {
        pub path: String,
        pub data: Data,
        pub acl: Vec<Acl>,
        pub flags: i32,
    }
}

record! {
    /// createTTL (21).
    pub struct CreateTtlRequest {
        pub path: String,
        pub data: Data,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

record! {
    /// delete (2), deleteContainer (20).
    pub struct DeleteRequest {
        pub path: String,
        pub version: i32,
    }
}

record! {
    /// exists (3), getData (4), getChildren (8), getChildren2 (12).
    pub struct PathWatchRequest {
        pub path: String,
        pub watch: bool,
    }
}

record! {
    /// getACL (6), sync (9), getAllChildrenNumber (104), and SyncResponse.
    pub struct PathRequest {
        pub path: String,
    }
}

record! {
    /// setData (5).
    pub struct SetDataRequest {
        pub path: String,
        pub data: Data,
        pub version: i32,
    }
}

record! {
    /// setACL (7).
    pub struct SetAclRequest {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

record! {
    /// check (13), only inside multi.
    pub struct CheckVersionRequest {
        pub path: String,
        pub version: i32,
    }
}

record! {
    /// reconfig (16). Null and empty strings mean different things here.
    pub struct ReconfigRequest {
        pub joining_servers: Option<String>,
        pub leaving_servers: Option<String>,
        pub new_members: Option<String>,
        pub cur_config_id: i64,
    }
}

record! {
    /// checkWatches (17) and removeWatches (18); `watcher_type` is a [`super::WatcherType`].
    pub struct WatchesRequest {
        pub path: String,
        pub watcher_type: i32,
    }
}

record! {
    /// addWatch (106); `mode` is an [`super::AddWatchMode`].
    pub struct AddWatchRequest {
        pub path: String,
        pub mode: i32,
    }
}

record! {
    /// getEphemerals (103).
    pub struct GetEphemeralsRequest {
        pub prefix_path: String,
    }
}

// ---------------------------------------------------------------------------------------------
// org.apache.zookeeper.proto: responses

record! {
    /// create (1).
    pub struct CreateResponse {
        pub path: String,
    }
}

record! {
    /// create2 (15), createContainer (19), createTTL (21).
    pub struct Create2Response {
        pub path: String,
        pub stat: Stat,
    }
}

record! {
    /// exists (3), setData (5), setACL (7).
    pub struct StatResponse {
        pub stat: Stat,
    }
}

record! {
    /// getData (4) and reconfig (16).
    pub struct GetDataResponse {
        pub data: Data,
        pub stat: Stat,
    }
}

record! {
    /// getACL (6).
    pub struct GetAclResponse {
        pub acl: Vec<Acl>,
        pub stat: Stat,
    }
}

record! {
    /// getChildren (8).
    pub struct GetChildrenResponse {
        pub children: Vec<String>,
    }
}

record! {
    /// getChildren2 (12).
    pub struct GetChildren2Response {
        pub children: Vec<String>,
        pub stat: Stat,
    }
}

record! {
    /// getAllChildrenNumber (104).
    pub struct GetAllChildrenNumberResponse {
        pub total_number: i32,
    }
}

record! {
    /// getEphemerals (103).
    pub struct GetEphemeralsResponse {
        pub ephemerals: Vec<String>,
    }
}

record! {
    /// whoAmI (107).
    pub struct WhoAmIResponse {
        pub client_info: Vec<ClientInfo>,
    }
}

// ---------------------------------------------------------------------------------------------
// org.apache.zookeeper.txn and persistence

record! {
    /// Precedes every txn in the log and in proposals.
    pub struct TxnHeader {
        pub client_id: i64,
        pub cxid: i32,
        pub zxid: i64,
        pub time: i64,
        pub op: i32,
    }
}

record! {
    /// createSession (-10).
    pub struct CreateSessionTxn {
        pub time_out: i32,
    }
}

record! {
    /// createTTL (21).
    pub struct CreateTtlTxn {
        pub path: String,
        pub data: Data,
        pub acl: Vec<Acl>,
        pub parent_c_version: i32,
        pub ttl: i64,
    }
}

record! {
    /// createContainer (19).
    pub struct CreateContainerTxn {
        pub path: String,
        pub data: Data,
        pub acl: Vec<Acl>,
        pub parent_c_version: i32,
    }
}

record! {
    /// delete (2), deleteContainer (20).
    pub struct DeleteTxn {
        pub path: String,
    }
}

record! {
    /// setData (5), reconfig (16). `version` is the node's new version.
    pub struct SetDataTxn {
        pub path: String,
        pub data: Data,
        pub version: i32,
    }
}

record! {
    /// setACL (7). `version` is the node's new aversion.
    pub struct SetAclTxn {
        pub path: String,
        pub acl: Vec<Acl>,
        pub version: i32,
    }
}

record! {
    /// check (13) inside multi.
    pub struct CheckVersionTxn {
        pub path: String,
        pub version: i32,
    }
}

record! {
    /// error (-1): a write that failed in preparation.
    pub struct ErrorTxn {
        pub err: i32,
    }
}

record! {
    /// One element of MultiTxn: a sub-txn type and its encoded record.
    pub struct SubTxn {
        pub op: i32,
        pub data: Data,
    }
}

record! {
    /// The tree digest after a txn, appended to log entries (3.6+).
    pub struct TxnDigest {
        pub version: i32,
        pub tree_digest: i64,
    }
}

record! {
    /// The header of txn log and snapshot files.
    pub struct FileHeader {
        pub magic: i32,
        pub version: i32,
        pub dbid: i64,
    }
}

record! {
    /// The digest trailer of a snapshot (3.6+).
    pub struct ZxidDigest {
        pub zxid: i64,
        pub digest_version: i32,
        pub digest: i64,
    }
}

// ---------------------------------------------------------------------------------------------
// Records with optional trailing fields, written by hand.

/// The first packet of a connection. `read_only` is `None` when an old client left the trailing
/// byte out; the response must then leave it out too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Data,
    pub read_only: Option<bool>,
}

impl Jute for ConnectRequest {
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        Ok(ConnectRequest {
            protocol_version: r.read_i32()?,
            last_zxid_seen: r.read_i64()?,
            time_out: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_data()?,
            read_only: if r.is_empty() { None } else { Some(r.read_bool()?) },
        })
    }

    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_i32(self.protocol_version);
        w.put_i64(self.last_zxid_seen);
        w.put_i32(self.time_out);
        w.put_i64(self.session_id);
        self.passwd.write(w);
        if let Some(ro) = self.read_only {
            w.put_bool_jute(ro);
        }
    }
}

/// The answer to a ConnectRequest; `read_only` is present iff the request carried it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Data,
    pub read_only: Option<bool>,
}

impl Jute for ConnectResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        Ok(ConnectResponse {
            protocol_version: r.read_i32()?,
            time_out: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_data()?,
            read_only: if r.is_empty() { None } else { Some(r.read_bool()?) },
        })
    }

    fn write<B: BufMut>(&self, w: &mut B) {
        w.put_i32(self.protocol_version);
        w.put_i32(self.time_out);
        w.put_i64(self.session_id);
        self.passwd.write(w);
        if let Some(ro) = self.read_only {
            w.put_bool_jute(ro);
        }
    }
}

/// create (1) and create2 (15). Logs written before parentCVersion existed (CreateTxnV0) end
/// after `ephemeral`; such a txn reads with `parent_c_version` -1 ("parent's + 1" on apply).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CreateTxn {
    pub path: String,
    pub data: Data,
    pub acl: Vec<Acl>,
    pub ephemeral: bool,
    pub parent_c_version: i32,
}

impl Jute for CreateTxn {
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        let path = r.read_ustring()?;
        let data = r.read_data()?;
        let acl = Vec::<Acl>::read(r)?;
        let ephemeral = r.read_bool()?;
        let parent_c_version = if r.is_empty() { -1 } else { r.read_i32()? };
        Ok(CreateTxn { path, data, acl, ephemeral, parent_c_version })
    }

    fn write<B: BufMut>(&self, w: &mut B) {
        self.path.write(w);
        self.data.write(w);
        self.acl.write(w);
        w.put_bool_jute(self.ephemeral);
        w.put_i32(self.parent_c_version);
    }
}

/// closeSession (-11). Since 3.6 it lists the ephemeral paths to delete; older logs have an
/// empty body (`None`), and the tree then deletes whatever its own index says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CloseSessionTxn {
    pub paths_to_delete: Option<Vec<String>>,
}

impl Jute for CloseSessionTxn {
    fn read(r: &mut Reader<'_>) -> Result<Self, JuteError> {
        if r.is_empty() {
            return Ok(CloseSessionTxn { paths_to_delete: None });
        }
        Ok(CloseSessionTxn { paths_to_delete: Some(Vec::<String>::read(r)?) })
    }

    fn write<B: BufMut>(&self, w: &mut B) {
        if let Some(paths) = &self.paths_to_delete {
            paths.write(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<T: Jute + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
        let bytes = v.encode();
        prop_assert_eq!(&T::decode_exact(&bytes).unwrap(), v);
        // Strict prefixes must fail cleanly, never panic, never succeed with the full value
        // (all of them for short encodings, an even sample of ~256 for long ones).
        let step = (bytes.len() / 256).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            if let Ok(short) = T::decode_exact(&bytes[..cut]) {
                prop_assert_ne!(&short, v);
            }
        }
        Ok(())
    }

    macro_rules! round_trip_tests {
        ($($name:ident: $ty:ty,)*) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(64))]
                $(
                    #[test]
                    fn $name(v in any::<$ty>()) {
                        round_trip(&v)?;
                    }
                )*
            }
        };
    }

    round_trip_tests! {
        id: Id,
        acl: Acl,
        stat: Stat,
        stat_persisted: StatPersisted,
        client_info: ClientInfo,
        request_header: RequestHeader,
        reply_header: ReplyHeader,
        multi_header: MultiHeader,
        auth_packet: AuthPacket,
        set_watches: SetWatches,
        set_watches2: SetWatches2,
        watcher_event: WatcherEvent,
        error_response: ErrorResponse,
        sasl_token: SaslToken,
        create_request: CreateRequest,
        create_ttl_request: CreateTtlRequest,
        delete_request: DeleteRequest,
        path_watch_request: PathWatchRequest,
        path_request: PathRequest,
        set_data_request: SetDataRequest,
        set_acl_request: SetAclRequest,
        check_version_request: CheckVersionRequest,
        reconfig_request: ReconfigRequest,
        watches_request: WatchesRequest,
        add_watch_request: AddWatchRequest,
        get_ephemerals_request: GetEphemeralsRequest,
        create_response: CreateResponse,
        create2_response: Create2Response,
        stat_response: StatResponse,
        get_data_response: GetDataResponse,
        get_acl_response: GetAclResponse,
        get_children_response: GetChildrenResponse,
        get_children2_response: GetChildren2Response,
        get_all_children_number_response: GetAllChildrenNumberResponse,
        get_ephemerals_response: GetEphemeralsResponse,
        who_am_i_response: WhoAmIResponse,
        txn_header: TxnHeader,
        create_session_txn: CreateSessionTxn,
        create_ttl_txn: CreateTtlTxn,
        create_container_txn: CreateContainerTxn,
        delete_txn: DeleteTxn,
        set_data_txn: SetDataTxn,
        set_acl_txn: SetAclTxn,
        check_version_txn: CheckVersionTxn,
        error_txn: ErrorTxn,
        sub_txn: SubTxn,
        txn_digest: TxnDigest,
        file_header: FileHeader,
        zxid_digest: ZxidDigest,
    }

    #[test]
    fn stat_sizes() {
        assert_eq!(Stat::default().encode().len(), 68);
        assert_eq!(StatPersisted::default().encode().len(), 60);
        assert_eq!(<Stat as Jute>::MIN_SIZE, 68);
    }

    #[test]
    fn connect_request_optional_read_only() {
        let mut req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 7,
            time_out: 30_000,
            session_id: 0,
            passwd: Data::from(vec![0u8; 16]),
            read_only: None,
        };
        let old = req.encode();
        assert_eq!(old.len(), 44);
        assert_eq!(ConnectRequest::decode_exact(&old).unwrap(), req);
        req.read_only = Some(false);
        let new = req.encode();
        assert_eq!(new.len(), 45);
        assert_eq!(ConnectRequest::decode_exact(&new).unwrap(), req);
        let resp = ConnectResponse {
            protocol_version: 0,
            time_out: 30_000,
            session_id: 1,
            passwd: Data::from(vec![0u8; 16]),
            read_only: Some(false),
        };
        // Live 3.8.0: a 37-byte frame body when the request carried the byte, 36 without.
        assert_eq!(resp.encode().len(), 37);
        assert_eq!(ConnectResponse { read_only: None, ..resp }.encode().len(), 36);
    }

    #[test]
    fn create_txn_v0_reads_with_unknown_parent_cversion() {
        let txn = CreateTxn {
            path: "/a".into(),
            data: Data::from("x"),
            acl: Acl::open_unsafe(),
            ephemeral: true,
            parent_c_version: 3,
        };
        let bytes = txn.encode();
        assert_eq!(CreateTxn::decode_exact(&bytes).unwrap(), txn);
        let v0 = CreateTxn::decode_exact(&bytes[..bytes.len() - 4]).unwrap();
        assert_eq!(v0.parent_c_version, -1);
        assert_eq!(v0.path, "/a");
    }

    #[test]
    fn close_session_txn_forms() {
        assert_eq!(CloseSessionTxn::decode_exact(&[]).unwrap().paths_to_delete, None);
        let txn = CloseSessionTxn { paths_to_delete: Some(vec!["/e".into()]) };
        assert_eq!(CloseSessionTxn::decode_exact(&txn.encode()).unwrap(), txn);
    }
}
