//! Kerberos: SASL's GSSAPI mechanism (RFC 4752) over the system's GSS-API library, MIT krb5's
//! `libgssapi_krb5.so.2`, as ZooKeeper uses the JDK's.
//!
//! The library is loaded when Kerberos is first configured, not linked: the server builds and
//! runs on a machine without Kerberos (only a JAAS section with `Krb5LoginModule` needs it,
//! and says so when it is missing). The few GSS-API calls used are declared here from RFC
//! 2744's C bindings, whose ABI MIT krb5 has kept since 1.0; credentials come from a keytab
//! through MIT's `gss_acquire_cred_from` (a keytab per credential, so the client and quorum
//! sections can name different ones).
//!
//! [`Acceptor`] is the server's side of one exchange: the GSS context, then the
//! security-layer step (the server offers "no security layer" in a wrapped 4-byte token, the
//! client answers with its choice), as the JDK's GSSAPI SASL server does. [`Initiator`] is the
//! client's side (a learner authenticating to a server, and tests).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

/// Why a Kerberos exchange (or loading the library) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Kerberos (GSSAPI): {0}")]
pub struct GssError(pub String);

type Om = u32;
type Name = *mut c_void;
type Ctx = *mut c_void;
type Cred = *mut c_void;

#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    fn empty() -> Buffer {
        Buffer { length: 0, value: std::ptr::null_mut() }
    }
    /// A buffer the library reads (it does not keep or free it).
    fn of(b: &[u8]) -> Buffer {
        Buffer { length: b.len(), value: b.as_ptr() as *mut c_void }
    }
}

#[repr(C)]
struct Oid {
    length: Om,
    elements: *const c_void,
}

#[repr(C)]
struct KeyValue {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: Om,
    elements: *const KeyValue,
}

/// 1.2.840.113554.1.2.2.1, GSS_KRB5_NT_PRINCIPAL_NAME: `service/host@REALM`.
const KRB5_PRINCIPAL_NAME: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01];
/// 1.2.840.113554.1.2.2, the Kerberos 5 mechanism.
const KRB5_MECH: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

const GSS_S_COMPLETE: Om = 0;
const GSS_S_CONTINUE_NEEDED: Om = 1;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
const GSS_C_INITIATE: c_int = 1;
const GSS_C_ACCEPT: c_int = 2;
const GSS_C_MUTUAL_FLAG: Om = 2;
const GSS_C_INTEG_FLAG: Om = 32;
const GSS_C_SEQUENCE_FLAG: Om = 8;
const GSS_C_REPLAY_FLAG: Om = 4;

fn is_error(major: Om) -> bool {
    major & 0xffff_0000 != 0
}

type ImportName = unsafe extern "C" fn(*mut Om, *const Buffer, *const Oid, *mut Name) -> Om;
type AcquireCredFrom = unsafe extern "C" fn(
    *mut Om,
    Name,
    Om,
    *const c_void,
    c_int,
    *const KeyValueSet,
    *mut Cred,
    *mut *mut c_void,
    *mut Om,
) -> Om;
type AcceptSecContext = unsafe extern "C" fn(
    *mut Om,
    *mut Ctx,
    Cred,
    *const Buffer,
    *const c_void,
    *mut Name,
    *mut *const Oid,
    *mut Buffer,
    *mut Om,
    *mut Om,
    *mut Cred,
) -> Om;
type InitSecContext = unsafe extern "C" fn(
    *mut Om,
    Cred,
    *mut Ctx,
    Name,
    *const Oid,
    Om,
    Om,
    *const c_void,
    *const Buffer,
    *mut *const Oid,
    *mut Buffer,
    *mut Om,
    *mut Om,
) -> Om;
type DisplayName = unsafe extern "C" fn(*mut Om, Name, *mut Buffer, *mut *const Oid) -> Om;
type Wrap =
    unsafe extern "C" fn(*mut Om, Ctx, c_int, Om, *const Buffer, *mut c_int, *mut Buffer) -> Om;
type Unwrap =
    unsafe extern "C" fn(*mut Om, Ctx, *const Buffer, *mut Buffer, *mut c_int, *mut Om) -> Om;
type ReleaseBuffer = unsafe extern "C" fn(*mut Om, *mut Buffer) -> Om;
type ReleaseName = unsafe extern "C" fn(*mut Om, *mut Name) -> Om;
type ReleaseCred = unsafe extern "C" fn(*mut Om, *mut Cred) -> Om;
type DeleteSecContext = unsafe extern "C" fn(*mut Om, *mut Ctx, *mut Buffer) -> Om;
type DisplayStatus =
    unsafe extern "C" fn(*mut Om, Om, c_int, *const Oid, *mut Om, *mut Buffer) -> Om;
type Krb5InitContext = unsafe extern "C" fn(*mut *mut c_void) -> i32;
type Krb5GetDefaultRealm = unsafe extern "C" fn(*mut c_void, *mut *mut c_char) -> i32;
type Krb5FreeDefaultRealm = unsafe extern "C" fn(*mut c_void, *mut c_char);
type Krb5FreeContext = unsafe extern "C" fn(*mut c_void);

/// The loaded library's entry points (the libraries stay loaded for the process's life).
struct Lib {
    import_name: ImportName,
    acquire_cred_from: AcquireCredFrom,
    accept_sec_context: AcceptSecContext,
    init_sec_context: InitSecContext,
    display_name: DisplayName,
    wrap: Wrap,
    unwrap: Unwrap,
    release_buffer: ReleaseBuffer,
    release_name: ReleaseName,
    release_cred: ReleaseCred,
    delete_sec_context: DeleteSecContext,
    display_status: DisplayStatus,
    krb5_init_context: Krb5InitContext,
    krb5_get_default_realm: Krb5GetDefaultRealm,
    krb5_free_default_realm: Krb5FreeDefaultRealm,
    krb5_free_context: Krb5FreeContext,
}

/// The shared object names tried, in order.
const GSS_LIBRARIES: [&str; 2] = ["libgssapi_krb5.so.2", "libgssapi_krb5.so"];
const KRB5_LIBRARIES: [&str; 2] = ["libkrb5.so.3", "libkrb5.so"];

fn open(names: &[&str]) -> Result<&'static libloading::Library, GssError> {
    let mut last = String::new();
    for n in names {
        // SAFETY: MIT krb5's libraries run no initialisers with preconditions on the caller.
        match unsafe { libloading::Library::new(n) } {
            Ok(l) => return Ok(Box::leak(Box::new(l))),
            Err(e) => last = e.to_string(),
        }
    }
    Err(GssError(format!(
        "cannot load {} ({last}); install MIT Kerberos (Debian: libgssapi-krb5-2)",
        names[0]
    )))
}

fn lib() -> Result<&'static Lib, GssError> {
    static LIB: OnceLock<Result<Lib, GssError>> = OnceLock::new();
    LIB.get_or_init(|| {
        let gss = open(&GSS_LIBRARIES)?;
        let krb5 = open(&KRB5_LIBRARIES)?;
        macro_rules! sym {
            ($lib:expr, $name:literal) => {
                // SAFETY: the type is the symbol's C prototype (RFC 2744, MIT's krb5.h and
                // gssapi_ext.h); the library is never unloaded.
                *unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| GssError(format!("{}: {e}", $name)))?
            };
        }
        Ok(Lib {
            import_name: sym!(gss, "gss_import_name"),
            acquire_cred_from: sym!(gss, "gss_acquire_cred_from"),
            accept_sec_context: sym!(gss, "gss_accept_sec_context"),
            init_sec_context: sym!(gss, "gss_init_sec_context"),
            display_name: sym!(gss, "gss_display_name"),
            wrap: sym!(gss, "gss_wrap"),
            unwrap: sym!(gss, "gss_unwrap"),
            release_buffer: sym!(gss, "gss_release_buffer"),
            release_name: sym!(gss, "gss_release_name"),
            release_cred: sym!(gss, "gss_release_cred"),
            delete_sec_context: sym!(gss, "gss_delete_sec_context"),
            display_status: sym!(gss, "gss_display_status"),
            krb5_init_context: sym!(krb5, "krb5_init_context"),
            krb5_get_default_realm: sym!(krb5, "krb5_get_default_realm"),
            krb5_free_default_realm: sym!(krb5, "krb5_free_default_realm"),
            krb5_free_context: sym!(krb5, "krb5_free_context"),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Whether the GSS-API library can be loaded (the reason when not).
pub fn available() -> Result<(), GssError> {
    lib().map(|_| ())
}

/// The default realm of the Kerberos configuration (`KRB5_CONFIG`, else /etc/krb5.conf).
pub fn default_realm() -> Result<String, GssError> {
    let l = lib()?;
    let mut ctx = std::ptr::null_mut();
    // SAFETY: out-parameters owned here, freed with the matching calls.
    unsafe {
        let rc = (l.krb5_init_context)(&mut ctx);
        if rc != 0 {
            return Err(GssError(format!("krb5_init_context failed ({rc})")));
        }
        let mut realm = std::ptr::null_mut();
        let rc = (l.krb5_get_default_realm)(ctx, &mut realm);
        let out = if rc == 0 && !realm.is_null() {
            let s = CStr::from_ptr(realm).to_string_lossy().into_owned();
            (l.krb5_free_default_realm)(ctx, realm);
            Ok(s)
        } else {
            Err(GssError(format!("no default realm in the Kerberos configuration ({rc})")))
        };
        (l.krb5_free_context)(ctx);
        out
    }
}

/// The library's words for a failed call.
fn status(l: &Lib, what: &str, major: Om, minor: Om) -> GssError {
    let mut words = Vec::new();
    for (code, kind) in [(major, GSS_C_GSS_CODE), (minor, GSS_C_MECH_CODE)] {
        if code == 0 {
            continue;
        }
        let mut more: Om = 0;
        for _ in 0..8 {
            let mut m: Om = 0;
            let mut buf = Buffer::empty();
            let mech = Oid { length: KRB5_MECH.len() as Om, elements: KRB5_MECH.as_ptr().cast() };
            // SAFETY: out-parameters owned here; the buffer is released below.
            let rc = unsafe { (l.display_status)(&mut m, code, kind, &mech, &mut more, &mut buf) };
            if is_error(rc) {
                break;
            }
            words.push(String::from_utf8_lossy(&take(l, &mut buf)).into_owned());
            if more == 0 {
                break;
            }
        }
    }
    GssError(format!("{what}: {}", words.join("; ")))
}

/// Copies out and releases a buffer the library allocated.
fn take(l: &Lib, b: &mut Buffer) -> Vec<u8> {
    let out = if b.value.is_null() || b.length == 0 {
        Vec::new()
    } else {
        // SAFETY: the library allocated `length` bytes at `value`.
        unsafe { std::slice::from_raw_parts(b.value as *const u8, b.length) }.to_vec()
    };
    let mut m: Om = 0;
    // SAFETY: a buffer from the library, released once.
    unsafe { (l.release_buffer)(&mut m, b) };
    out
}

fn import_principal(l: &Lib, principal: &str) -> Result<Name, GssError> {
    let oid = Oid {
        length: KRB5_PRINCIPAL_NAME.len() as Om,
        elements: KRB5_PRINCIPAL_NAME.as_ptr().cast(),
    };
    let buf = Buffer::of(principal.as_bytes());
    let mut name = std::ptr::null_mut();
    let mut minor: Om = 0;
    // SAFETY: input buffers live across the call; the name is released by the caller.
    let major = unsafe { (l.import_name)(&mut minor, &buf, &oid, &mut name) };
    if is_error(major) {
        return Err(status(l, &format!("the principal {principal}"), major, minor));
    }
    Ok(name)
}

fn display(l: &Lib, name: Name) -> Result<String, GssError> {
    let mut minor: Om = 0;
    let mut buf = Buffer::empty();
    // SAFETY: `name` is a valid name; the buffer is released by `take`.
    let major = unsafe { (l.display_name)(&mut minor, name, &mut buf, std::ptr::null_mut()) };
    if is_error(major) {
        return Err(status(l, "the peer's name", major, minor));
    }
    Ok(String::from_utf8_lossy(&take(l, &mut buf)).into_owned())
}

/// Credentials for `principal` (or whichever the keytab holds first, for an acceptor) from
/// `keytab` (else the library's default: `KRB5_KTNAME`, or for an initiator the ticket cache).
fn credentials(
    l: &Lib,
    principal: Option<&str>,
    keytab: Option<&str>,
    accept: bool,
) -> Result<Cred, GssError> {
    let mut name: Name = std::ptr::null_mut();
    if let Some(p) = principal {
        name = import_principal(l, p)?;
    }
    let mut owned: Vec<(CString, CString)> = Vec::new();
    let c = |s: &str| CString::new(s).map_err(|_| GssError("a NUL in a keytab path".into()));
    if let Some(k) = keytab {
        if accept {
            owned.push((c("keytab")?, c(k)?));
        } else {
            owned.push((c("client_keytab")?, c(k)?));
            // Tickets got from the keytab stay in this process, a cache per principal.
            let who: String = principal
                .unwrap_or("default")
                .chars()
                .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                .collect();
            owned.push((c("ccache")?, c(&format!("MEMORY:corral-{}-{who}", std::process::id()))?));
        }
    }
    let elements: Vec<KeyValue> =
        owned.iter().map(|(k, v)| KeyValue { key: k.as_ptr(), value: v.as_ptr() }).collect();
    let store = KeyValueSet { count: elements.len() as Om, elements: elements.as_ptr() };
    let mut cred = std::ptr::null_mut();
    let mut minor: Om = 0;
    // SAFETY: every pointer argument outlives the call; `cred` is released by its owner.
    let major = unsafe {
        (l.acquire_cred_from)(
            &mut minor,
            name,
            0,
            std::ptr::null(),
            if accept { GSS_C_ACCEPT } else { GSS_C_INITIATE },
            if elements.is_empty() { std::ptr::null() } else { &store },
            &mut cred,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if !name.is_null() {
        let mut m: Om = 0;
        // SAFETY: imported above, released once.
        unsafe { (l.release_name)(&mut m, &mut name) };
    }
    if is_error(major) {
        let whose = principal.unwrap_or("the default principal");
        let from = keytab.map(|k| format!(" from the keytab {k}")).unwrap_or_default();
        return Err(status(l, &format!("credentials of {whose}{from}"), major, minor));
    }
    Ok(cred)
}

/// The 4-byte security-layer message: the layers (1 = none) and the largest message size.
fn layer_message(max: u32) -> [u8; 4] {
    let m = max.to_be_bytes();
    [1, m[1], m[2], m[3]]
}

/// The largest message this side accepts (the JDK's default, 65,536).
const MAX_MESSAGE: u32 = 65_536;

/// A GSS context and the credentials it uses, released together.
struct Context {
    lib: &'static Lib,
    ctx: Ctx,
    cred: Cred,
}

// SAFETY: a context is used by one thread at a time (its owner's); MIT's GSS-API does not tie
// contexts or credentials to the thread that made them.
unsafe impl Send for Context {}

impl Drop for Context {
    fn drop(&mut self) {
        let mut m: Om = 0;
        // SAFETY: owned handles, released once (the library ignores null ones).
        unsafe {
            if !self.ctx.is_null() {
                (self.lib.delete_sec_context)(&mut m, &mut self.ctx, std::ptr::null_mut());
            }
            if !self.cred.is_null() {
                (self.lib.release_cred)(&mut m, &mut self.cred);
            }
        }
    }
}

impl Context {
    fn wrap(&self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        let l = self.lib;
        let input = Buffer::of(data);
        let mut out = Buffer::empty();
        let mut minor: Om = 0;
        // SAFETY: an established context; the output is released by `take`.
        let major =
            unsafe { (l.wrap)(&mut minor, self.ctx, 0, 0, &input, std::ptr::null_mut(), &mut out) };
        if is_error(major) {
            return Err(status(l, "wrapping the security-layer message", major, minor));
        }
        Ok(take(l, &mut out))
    }

    fn unwrap(&self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        let l = self.lib;
        let input = Buffer::of(data);
        let mut out = Buffer::empty();
        let mut minor: Om = 0;
        // SAFETY: as in `wrap`.
        let major = unsafe {
            (l.unwrap)(
                &mut minor,
                self.ctx,
                &input,
                &mut out,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if is_error(major) {
            return Err(status(l, "unwrapping the security-layer message", major, minor));
        }
        Ok(take(l, &mut out))
    }
}

/// What the server answers a client's token with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptStep {
    /// A token for the client; the exchange goes on.
    Continue(Vec<u8>),
    /// The client is authenticated as `principal` (`name[/host]@REALM`); nothing more to send.
    Done {
        /// The client's Kerberos principal.
        principal: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Establishing the GSS context.
    Context,
    /// Established; the client's (empty) answer to the server's last context token is next.
    Established,
    /// The security-layer offer was sent; the client's choice is next.
    Offered,
    Over,
}

/// The server's side of one SASL GSSAPI exchange.
pub struct Acceptor {
    ctx: Context,
    stage: Stage,
    peer: Option<String>,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor").field("stage", &self.stage).field("peer", &self.peer).finish()
    }
}

impl Acceptor {
    /// An exchange accepting tickets for `principal` (e.g. `zookeeper/host@REALM`; `None`: any
    /// principal of the keytab) with the keys in `keytab`.
    pub fn new(principal: Option<&str>, keytab: Option<&str>) -> Result<Acceptor, GssError> {
        let lib = lib()?;
        let cred = credentials(lib, principal, keytab, true)?;
        Ok(Acceptor {
            ctx: Context { lib, ctx: std::ptr::null_mut(), cred },
            stage: Stage::Context,
            peer: None,
        })
    }

    /// Takes the client's next token.
    pub fn step(&mut self, token: &[u8]) -> Result<AcceptStep, GssError> {
        let l = self.ctx.lib;
        match self.stage {
            Stage::Context => {
                let input = Buffer::of(token);
                let mut out = Buffer::empty();
                let mut src: Name = std::ptr::null_mut();
                let (mut minor, mut flags, mut time): (Om, Om, Om) = (0, 0, 0);
                // SAFETY: handles owned by self.ctx; outputs released below.
                let major = unsafe {
                    (l.accept_sec_context)(
                        &mut minor,
                        &mut self.ctx.ctx,
                        self.ctx.cred,
                        &input,
                        std::ptr::null(),
                        &mut src,
                        std::ptr::null_mut(),
                        &mut out,
                        &mut flags,
                        &mut time,
                        std::ptr::null_mut(),
                    )
                };
                let reply = take(l, &mut out);
                if is_error(major) {
                    self.stage = Stage::Over;
                    if !src.is_null() {
                        // SAFETY: returned by the call, released once.
                        unsafe { (l.release_name)(&mut minor, &mut src) };
                    }
                    return Err(status(l, "accepting the client's ticket", major, minor));
                }
                if major & 0xffff == GSS_S_CONTINUE_NEEDED {
                    return Ok(AcceptStep::Continue(reply));
                }
                let peer = if src.is_null() {
                    Err(GssError("the library named no client".into()))
                } else {
                    let p = display(l, src);
                    let mut m: Om = 0;
                    // SAFETY: returned by the call, released once.
                    unsafe { (l.release_name)(&mut m, &mut src) };
                    p
                };
                self.peer = Some(peer?);
                if reply.is_empty() {
                    // Nothing for the client to take in: the offer goes at once.
                    self.stage = Stage::Offered;
                    Ok(AcceptStep::Continue(self.ctx.wrap(&layer_message(MAX_MESSAGE))?))
                } else {
                    self.stage = Stage::Established;
                    Ok(AcceptStep::Continue(reply))
                }
            }
            Stage::Established => {
                self.stage = Stage::Offered;
                Ok(AcceptStep::Continue(self.ctx.wrap(&layer_message(MAX_MESSAGE))?))
            }
            Stage::Offered => {
                self.stage = Stage::Over;
                let answer = self.ctx.unwrap(token)?;
                if answer.len() < 4 {
                    return Err(GssError(format!(
                        "the client's security-layer answer has {} bytes, not at least 4",
                        answer.len()
                    )));
                }
                if answer[0] != 1 {
                    return Err(GssError(format!(
                        "the client chose security layer {:#x}; only 1 (none) was offered",
                        answer[0]
                    )));
                }
                let principal = self.peer.clone().unwrap_or_default();
                Ok(AcceptStep::Done { principal })
            }
            Stage::Over => Err(GssError("the exchange is already over".into())),
        }
    }
}

/// The client's side of one SASL GSSAPI exchange.
pub struct Initiator {
    ctx: Context,
    target: Name,
    stage: Stage,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator").field("stage", &self.stage).finish()
    }
}

impl Drop for Initiator {
    fn drop(&mut self) {
        if !self.target.is_null() {
            let mut m: Om = 0;
            // SAFETY: imported in `new`, released once.
            unsafe { (self.ctx.lib.release_name)(&mut m, &mut self.target) };
        }
    }
}

// SAFETY: as for `Context`; the target name is only read by the owner's thread.
unsafe impl Send for Initiator {}

impl Initiator {
    /// An exchange with the server whose principal is `server` (`service/host[@REALM]`), as
    /// `principal` with keys from `keytab` (both `None`: the default ticket cache's).
    pub fn new(
        server: &str,
        principal: Option<&str>,
        keytab: Option<&str>,
    ) -> Result<Initiator, GssError> {
        let lib = lib()?;
        let cred = credentials(lib, principal, keytab, false)?;
        let ctx = Context { lib, ctx: std::ptr::null_mut(), cred };
        let target = import_principal(lib, server)?;
        Ok(Initiator { ctx, target, stage: Stage::Context })
    }

    /// The first token to send.
    pub fn start(&mut self) -> Result<Vec<u8>, GssError> {
        self.context_step(&[])
    }

    fn context_step(&mut self, token: &[u8]) -> Result<Vec<u8>, GssError> {
        let l = self.ctx.lib;
        let input = Buffer::of(token);
        let mut out = Buffer::empty();
        let mech = Oid { length: KRB5_MECH.len() as Om, elements: KRB5_MECH.as_ptr().cast() };
        let (mut minor, mut flags, mut time): (Om, Om, Om) = (0, 0, 0);
        // SAFETY: handles owned by self; the output is released by `take`.
        let major = unsafe {
            (l.init_sec_context)(
                &mut minor,
                self.ctx.cred,
                &mut self.ctx.ctx,
                self.target,
                &mech,
                GSS_C_MUTUAL_FLAG | GSS_C_INTEG_FLAG | GSS_C_SEQUENCE_FLAG | GSS_C_REPLAY_FLAG,
                0,
                std::ptr::null(),
                if token.is_empty() { std::ptr::null() } else { &input },
                std::ptr::null_mut(),
                &mut out,
                &mut flags,
                &mut time,
            )
        };
        let reply = take(l, &mut out);
        if is_error(major) {
            self.stage = Stage::Over;
            return Err(status(l, "getting a ticket for the server", major, minor));
        }
        if major & 0xffff == GSS_S_COMPLETE {
            self.stage = Stage::Established;
        }
        Ok(reply)
    }

    /// Takes the server's token; `Some` token to send (possibly empty), or `None` when the
    /// exchange is over on this side.
    pub fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, GssError> {
        match self.stage {
            Stage::Context => self.context_step(token).map(Some),
            Stage::Established => {
                // The server's security-layer offer: take "none", with our largest message.
                self.stage = Stage::Over;
                let offer = self.ctx.unwrap(token)?;
                if offer.len() != 4 || offer[0] & 1 == 0 {
                    return Err(GssError(format!(
                        "the server's security-layer offer {offer:02x?} does not allow none"
                    )));
                }
                self.ctx.wrap(&layer_message(MAX_MESSAGE)).map(Some)
            }
            Stage::Offered | Stage::Over => Ok(None),
        }
    }

    /// Whether this side has sent its last token.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Over
    }
}

/// A principal's parts, as ZooKeeper's `KerberosName` reads `service[/host][@REALM]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal<'a> {
    /// The first component.
    pub service: &'a str,
    /// The second component, if any.
    pub host: Option<&'a str>,
    /// The realm, if any.
    pub realm: Option<&'a str>,
}

impl<'a> Principal<'a> {
    /// Splits a principal name.
    pub fn parse(name: &'a str) -> Principal<'a> {
        let (front, realm) = match name.split_once('@') {
            Some((f, r)) => (f, Some(r)),
            None => (name, None),
        };
        let (service, host) = match front.split_once('/') {
            Some((s, h)) => (s, Some(h)),
            None => (front, None),
        };
        Principal { service, host, realm }
    }
}
