//! zoo.cfg: ZooKeeper's configuration file, read the way ZooKeeper 3.8 reads it.
//!
//! Owns: the Java Properties syntax ([`parse_properties`], bit-compatible with
//! `java.util.Properties.load`: `#`/`!` comments, `key=value`, `key: value` and `key value`,
//! backslash continuations and escapes, `\uXXXX`), every key ZooKeeper's `QuorumPeerConfig`
//! knows plus the ones it turns into `zookeeper.*` system properties, ZooKeeper's defaults and
//! checks, `server.N` lines in the full 3.5+ syntax, the `myid` file, a dynamic config file, the
//! overrides a test harness passes as `-Dzookeeper.K=V` ([`Config::apply_system_property`]), and
//! the built-in configuration of a bare `corral` ([`Config::default_standalone`]).
//!
//! Must never touch: sockets, clocks, or any file other than the configuration itself, the
//! dynamic config file it names and `<dataDir>/myid` (all read through [`ConfigFiles`], so tests
//! and embedders can supply them from memory). Host names are kept as written: nothing here
//! resolves DNS.
//!
//! Unknown keys are accepted, as ZooKeeper accepts them (it turns each into a system property),
//! and reported as [`ConfigWarning`]s, which are also logged with `tracing::warn!`. A value that
//! cannot be used is a [`ConfigError`] naming the key, the value and where it came from.
//!
//! Deviations from ZooKeeper, all deliberate:
//! * the file is read as UTF-8 (Latin-1 if it is not valid UTF-8); Java reads Latin-1 only;
//! * booleans accept `true`/`false`/`yes`/`no` in any case everywhere, and anything else is an
//!   error (ZooKeeper silently reads e.g. `forceSync=false` as "yes" because only `no` counts);
//! * a number ZooKeeper would silently replace by its default (`snapCount=abc`) is an error;
//! * `jute.maxbuffer` and `readonlymode.enabled` work from the file too (in ZooKeeper they are
//!   bare JVM properties, so a zoo.cfg line for them is silently ineffective);
//! * `multiAddress.enabled` in the file is honoured for `server.N` lines (3.8 only honours the
//!   system property there);
//! * ports must be 1..=65535 (Java accepts 0 for some of them);
//! * [`Config::apply_system_property`] is applied after the file, so it wins; in ZooKeeper a
//!   zoo.cfg key overwrites the `-D` property of the same name.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::admin::fourlw::{FourLetterWord, Whitelist};

/// ZooKeeper's default tick (`ZooKeeperServer.DEFAULT_TICK_TIME`).
pub const DEFAULT_TICK_TIME_MS: u32 = 3000;
/// Default `maxClientCnxns` (per client IP; 0 = unlimited).
pub const DEFAULT_MAX_CLIENT_CNXNS: u32 = 60;
/// Default `globalOutstandingLimit`.
pub const DEFAULT_GLOBAL_OUTSTANDING_LIMIT: u32 = 1000;
/// Default `snapCount`.
pub const DEFAULT_SNAP_COUNT: u32 = 100_000;
/// Smallest `snapCount` ZooKeeper uses; smaller values are raised to it with a warning.
pub const MIN_SNAP_COUNT: u32 = 2;
/// Default `snapSizeLimitInKb` (4 GiB).
pub const DEFAULT_SNAP_SIZE_LIMIT_KB: i64 = 4_194_304;
/// Default `preAllocSize`, in KiB (64 MiB).
pub const DEFAULT_PRE_ALLOC_SIZE_KB: u64 = 65_536;
/// Default and minimum `autopurge.snapRetainCount`.
pub const MIN_SNAP_RETAIN_COUNT: u32 = 3;
/// Default `jute.maxbuffer` (1 MiB - 1).
pub const DEFAULT_JUTE_MAX_BUFFER: u32 = 0xfffff;
/// Default `fsync.warningthresholdms`.
pub const DEFAULT_FSYNC_WARNING_THRESHOLD_MS: u64 = 1000;
/// Default `commitLogCount`.
pub const DEFAULT_COMMIT_LOG_COUNT: u32 = 500;
/// Default `cnxTimeout` (election connect timeout).
pub const DEFAULT_CNX_TIMEOUT_MS: u32 = 5000;
/// Default `admin.serverPort`.
pub const DEFAULT_ADMIN_SERVER_PORT: u16 = 8080;

/// ZooKeeper's default `metricsProvider.className` (no HTTP endpoint).
pub const DEFAULT_METRICS_PROVIDER: &str =
    "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider";

/// `metricsProvider.*`: which metrics provider, and where ZooKeeper's Prometheus provider
/// serves (`crate::net::metrics_http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsProviderConfig {
    /// `metricsProvider.className`.
    pub class_name: String,
    /// `metricsProvider.httpHost` (default `0.0.0.0`).
    pub http_host: String,
    /// `metricsProvider.httpPort` (default 7000).
    pub http_port: u16,
    /// `metricsProvider.exportJvmInfo` (default true; Corral's are the `process_*` metrics).
    pub export_jvm_info: bool,
}

impl Default for MetricsProviderConfig {
    fn default() -> Self {
        Self {
            class_name: DEFAULT_METRICS_PROVIDER.to_string(),
            http_host: "0.0.0.0".to_string(),
            http_port: 7000,
            export_jvm_info: true,
        }
    }
}
/// The only election algorithm ZooKeeper has had since 3.6 (FastLeaderElection).
pub const ELECTION_ALG_FAST_LEADER_ELECTION: u32 = 3;
/// Highest server id allowed when `extendedTypesEnabled` (TTL nodes) is on.
pub const MAX_SERVER_ID_EXTENDED_TYPES: u64 = 254;
/// The wildcard host ZooKeeper binds when a client port has no host.
pub const WILDCARD_HOST: &str = "0.0.0.0";

/// The configuration a bare `corral` (no arguments) runs with.
///
/// A standalone server on 127.0.0.1:2181 (loopback only, since nothing was configured there is
/// nothing to expose), data in `./corral-data`, the 2000 ms tick of ZooKeeper's sample zoo.cfg.
/// Unlike ZooKeeper's default (only `srvr`), every four-letter word is enabled: this is the
/// developer's zero-setup server, bound to loopback, where `echo mntr | nc` and
/// kazoo's `server_version()` (which sends `envi`) should simply work.
pub const DEFAULT_STANDALONE_ZOO_CFG: &str = "\
# Corral's built-in configuration, used when `corral` runs without a zoo.cfg.
tickTime=2000
dataDir=./corral-data
clientPort=2181
clientPortAddress=127.0.0.1
# Every four-letter word: a loopback-only developer server (ZooKeeper's default is srvr only).
4lw.commands.whitelist=*
# The AdminServer (HTTP commands) on ZooKeeper's port, loopback only like the rest.
admin.serverAddress=127.0.0.1
";

// ---------------------------------------------------------------------------------------------
// Errors, warnings, locations

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A line of the configuration file (1-based; the first line of a continued entry).
    Line(usize),
    /// A line of the dynamic configuration file (`dynamicConfigFile=`).
    DynamicLine(usize),
    /// [`Config::apply_system_property`].
    SystemProperty,
    /// The `myid` file.
    MyIdFile,
    /// Not set anywhere: a default or a value derived from other keys.
    Default,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::DynamicLine(n) => write!(f, "line {n} of the dynamic config file"),
            Location::SystemProperty => f.write_str("a system property"),
            Location::MyIdFile => f.write_str("the myid file"),
            Location::Default => f.write_str("the defaults"),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A `\u` escape not followed by four hex digits (Java: "Malformed \uxxxx encoding").
    #[error("{location}: malformed \\uxxxx escape")]
    MalformedEscape {
        /// Where.
        location: Location,
    },
    /// A value that cannot be used for its key.
    #[error("{location}: invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key, as written.
        key: String,
        /// The value, trimmed.
        value: String,
        /// Where.
        location: Location,
        /// What is wrong with it.
        reason: String,
    },
    /// A required key is not set.
    #[error("{key} is not set{}", if *.quorum { " (required in quorum mode)" } else { "" })]
    Missing {
        /// The key.
        key: &'static str,
        /// Whether it is required only because server.N lines make this a quorum.
        quorum: bool,
    },
    /// Quorum mode needs `<dataDir>/myid`.
    #[error("{} is missing (required in quorum mode)", path.display())]
    MissingMyId {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `myid` does not hold a server id.
    #[error("{}: server id {value:?} is not a number", path.display())]
    InvalidMyId {
        /// The file.
        path: PathBuf,
        /// Its content, trimmed.
        value: String,
    },
    /// `myid` names a server that has no `server.N` line.
    #[error("myid {my_id} has no server.{my_id} line")]
    MyIdNotInServers {
        /// The id from `myid`.
        my_id: u64,
    },
    /// Keys that are valid one by one but not together.
    #[error("{location}: {message}")]
    Inconsistent {
        /// What conflicts with what.
        message: String,
        /// The line of the key that made the conflict visible.
        location: Location,
    },
}

/// Something in the configuration worth telling the operator; the configuration is still used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A key neither ZooKeeper nor Corral knows (ZooKeeper turns it into a `zookeeper.<key>`
    /// system property, where it usually does nothing).
    UnknownKey {
        /// The key.
        key: String,
        /// Where.
        location: Location,
    },
    /// A ZooKeeper key Corral accepts but does not act on.
    Ignored {
        /// The key.
        key: String,
        /// Where.
        location: Location,
        /// Why it has no effect.
        reason: &'static str,
    },
    /// The same key twice; the last one wins, as in Java.
    DuplicateKey {
        /// The key.
        key: String,
        /// The line that lost.
        first: Location,
        /// The line that won.
        second: Location,
    },
    /// `autopurge.snapRetainCount` below 3, raised to 3 as ZooKeeper does.
    SnapRetainCountRaised {
        /// The configured value.
        value: i64,
        /// Where.
        location: Location,
    },
    /// `snapCount` below 2, raised to 2 as ZooKeeper does.
    SnapCountRaised {
        /// The configured value.
        value: i64,
        /// Where.
        location: Location,
    },
    /// A single participant with `standaloneEnabled=true`: ZooKeeper ignores the server line
    /// and runs standalone.
    SingleServerIgnored,
    /// One or two participants: no failure is tolerated.
    NoFailureTolerated {
        /// Number of participants.
        participants: usize,
    },
    /// An even number of participants tolerates no more failures than one fewer.
    EvenParticipants {
        /// Number of participants.
        participants: usize,
    },
    /// `peerType` disagrees with this server's role in its `server.N` line; the line wins.
    PeerTypeMismatch {
        /// `peerType`.
        peer_type: LearnerType,
        /// The role in the server line.
        server_line: LearnerType,
    },
    /// A server id above 255 only keeps its low byte in session ids, so sessions of two
    /// servers can collide.
    ServerIdAbove255 {
        /// The id.
        id: u64,
    },
    /// A `myid` file that is not a number, in standalone mode where it is not needed.
    InvalidMyIdIgnored {
        /// Its content, trimmed.
        value: String,
    },
    /// A name in `4lw.commands.whitelist` that is not a four-letter word.
    UnknownFourLetterWord {
        /// The name.
        name: String,
        /// Where.
        location: Location,
    },
    /// [`Config::apply_system_property`] with a key ZooKeeper only reads from zoo.cfg.
    NotASystemProperty {
        /// The property name.
        name: String,
    },
    /// [`Config::apply_system_property`] with a property ZooKeeper does not read.
    UnknownSystemProperty {
        /// The property name.
        name: String,
    },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::UnknownKey { key, location } => {
                write!(f, "{location}: unknown key {key} (ignored)")
            }
            ConfigWarning::Ignored { key, location, reason } => {
                write!(f, "{location}: {key} is ignored: {reason}")
            }
            ConfigWarning::DuplicateKey { key, first, second } => {
                write!(f, "{second}: {key} repeats {first}; the later value wins")
            }
            ConfigWarning::SnapRetainCountRaised { value, location } => write!(
                f,
                "{location}: invalid autopurge.snapRetainCount {value}, using \
                 {MIN_SNAP_RETAIN_COUNT}"
            ),
            ConfigWarning::SnapCountRaised { value, location } => {
                write!(f, "{location}: snapCount {value} is below {MIN_SNAP_COUNT}, using it")
            }
            ConfigWarning::SingleServerIgnored => f.write_str(
                "only one server specified and standaloneEnabled=true: running standalone",
            ),
            ConfigWarning::NoFailureTolerated { participants } => write!(
                f,
                "{participants} participants: no server failure will be tolerated, you need at \
                 least 3 servers"
            ),
            ConfigWarning::EvenParticipants { participants } => write!(
                f,
                "{participants} participants: non-optimal configuration, consider an odd number"
            ),
            ConfigWarning::PeerTypeMismatch { peer_type, server_line } => write!(
                f,
                "peerType {peer_type} does not match the server line ({server_line}); using \
                 the server line"
            ),
            ConfigWarning::ServerIdAbove255 { id } => write!(
                f,
                "server id {id} is above 255: only its low byte goes into session ids, which \
                 may collide with another server's"
            ),
            ConfigWarning::InvalidMyIdIgnored { value } => {
                write!(f, "myid {value:?} is not a number (ignored in standalone mode)")
            }
            ConfigWarning::UnknownFourLetterWord { name, location } => {
                write!(f, "{location}: {name:?} in 4lw.commands.whitelist is not a command")
            }
            ConfigWarning::NotASystemProperty { name } => write!(
                f,
                "system property {name} is not read by ZooKeeper (set it in zoo.cfg); ignored"
            ),
            ConfigWarning::UnknownSystemProperty { name } => {
                write!(f, "unknown system property {name} (ignored)")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Java Properties

/// One `key=value` entry of a properties file, exactly as `java.util.Properties.load` reads it
/// (escapes resolved, continuations joined, nothing trimmed beyond what Java trims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The key.
    pub key: String,
    /// The value (trailing white space kept, as Java keeps it).
    pub value: String,
    /// 1-based line where the entry starts.
    pub line: usize,
}

/// Reads a properties file with the rules of `java.util.Properties.load`.
///
/// Entries come back in file order, duplicates included (Java keeps the last). Rules: a logical
/// line starts at the first non-white-space character (space, tab, form feed; blank lines are
/// skipped); if that is `#` or `!` the natural line is a comment. A natural line ending in an odd
/// number of backslashes continues on the next line, whose leading white space is dropped
/// (comment lines never continue). The key runs to the first unescaped `=`, `:` or white space;
/// white space, then at most one `=` or `:`, then white space separate it from the value. In key
/// and value `\t`, `\n`, `\r`, `\f` and `\uXXXX` are escapes and `\c` is `c`.
pub fn parse_properties(text: &str) -> Result<Vec<Property>, ConfigError> {
    let mut entries = Vec::new();
    for (line, logical) in logical_lines(text) {
        let (key_end, value_start) = split_key_value(&logical);
        let location = Location::Line(line);
        let key = unescape(&logical[..key_end], location)?;
        let value = unescape(&logical[value_start..], location)?;
        entries.push(Property { key, value, line });
    }
    Ok(entries)
}

fn is_property_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{c}'
}

/// Logical lines (escapes still in place, continuations joined) with their first line number.
fn logical_lines(text: &str) -> Vec<(usize, Vec<char>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    // Consumes one line terminator (\n, \r or \r\n) at i, if there is one.
    let eat_terminator = |i: &mut usize, line: &mut usize| -> bool {
        match chars.get(*i) {
            Some('\n') => {
                *i += 1;
                *line += 1;
                true
            }
            Some('\r') => {
                *i += 1;
                if chars.get(*i) == Some(&'\n') {
                    *i += 1;
                }
                *line += 1;
                true
            }
            _ => false,
        }
    };
    loop {
        // Start of a logical line: skip white space and blank lines.
        while i < chars.len() {
            if is_property_space(chars[i]) {
                i += 1;
            } else if !eat_terminator(&mut i, &mut line) {
                break;
            }
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '#' || chars[i] == '!' {
            while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                i += 1;
            }
            continue;
        }
        let start_line = line;
        let mut buf = Vec::new();
        let mut preceding_backslash = false;
        loop {
            if i >= chars.len() {
                // Java drops a continuation backslash at the end of the input.
                if preceding_backslash {
                    buf.pop();
                }
                break;
            }
            let c = chars[i];
            if c == '\n' || c == '\r' {
                eat_terminator(&mut i, &mut line);
                if !preceding_backslash {
                    break;
                }
                buf.pop();
                preceding_backslash = false;
                while i < chars.len() && is_property_space(chars[i]) {
                    i += 1;
                }
                continue;
            }
            buf.push(c);
            i += 1;
            preceding_backslash = c == '\\' && !preceding_backslash;
        }
        out.push((start_line, buf));
    }
    out
}

/// Returns (end of key, start of value) in a logical line.
fn split_key_value(line: &[char]) -> (usize, usize) {
    let mut key_end = 0;
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    while key_end < line.len() {
        let c = line[key_end];
        if (c == '=' || c == ':') && !preceding_backslash {
            value_start = key_end + 1;
            has_separator = true;
            break;
        }
        if is_property_space(c) && !preceding_backslash {
            value_start = key_end + 1;
            break;
        }
        preceding_backslash = c == '\\' && !preceding_backslash;
        key_end += 1;
    }
    while value_start < line.len() {
        let c = line[value_start];
        if !is_property_space(c) {
            if !has_separator && (c == '=' || c == ':') {
                has_separator = true;
            } else {
                break;
            }
        }
        value_start += 1;
    }
    (key_end, value_start)
}

/// Resolves Java properties escapes; `\uXXXX` pairs of UTF-16 surrogates are combined.
fn unescape(chars: &[char], location: Location) -> Result<String, ConfigError> {
    let mut units: Vec<u16> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' || i >= chars.len() {
            let mut tmp = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut tmp));
            continue;
        }
        let e = chars[i];
        i += 1;
        let resolved = match e {
            'u' => {
                let hex: String =
                    chars.get(i..i + 4).map(|s| s.iter().collect()).unwrap_or_default();
                if hex.len() != 4 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    return Err(ConfigError::MalformedEscape { location });
                }
                i += 4;
                units.push(u16::from_str_radix(&hex, 16).expect("checked hex digits"));
                continue;
            }
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\u{c}',
            other => other,
        };
        let mut tmp = [0u16; 2];
        units.extend_from_slice(resolved.encode_utf16(&mut tmp));
    }
    Ok(String::from_utf16_lossy(&units))
}

/// Java's `String.trim()`: strips every character up to U+0020 from both ends.
/// The key a `-D` name sets when ZooKeeper reads it only from zoo.cfg (`clientPort`,
/// `zookeeper.clientPort`, `server.3`): such keys are given to
/// [`Config::load_with_overrides`]; `None` for the keys ZooKeeper reads as system properties
/// (given to [`Config::apply_system_property`]) and for names that are not keys.
pub fn file_key(name: &str) -> Option<&str> {
    let key = name.strip_prefix("zookeeper.").unwrap_or(name);
    match key_kind(key) {
        KeyKind::File | KeyKind::Membership | KeyKind::IgnoredFile(_) if !key.is_empty() => {
            Some(key)
        }
        _ => None,
    }
}

/// The system property a command-line `-D name` sets: `name` itself, or `zookeeper.name`
/// when `name` is a zoo.cfg key ZooKeeper reads as that property (`admin.serverPort`,
/// `4lw.commands.whitelist`, …), so that such a key works with or without its prefix.
pub fn property_name(name: &str) -> std::borrow::Cow<'_, str> {
    let bare = matches!(
        name,
        "jute.maxbuffer"
            | "readonlymode.enabled"
            | "java.security.auth.login.config"
            | "java.security.krb5.conf"
    );
    if !bare
        && !name.starts_with("zookeeper.")
        && matches!(key_kind(name), KeyKind::SystemProperty | KeyKind::IgnoredProperty(_))
    {
        std::borrow::Cow::Owned(format!("zookeeper.{name}"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// `text` with the lines of the `overrides`' keys left out and `key=value` lines for them at
/// the end.
fn with_overrides(text: &str, overrides: &[(String, String)]) -> Result<String, ConfigError> {
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    let props = parse_properties(text)?;
    let drop: std::collections::HashSet<usize> = props
        .iter()
        .filter(|p| overrides.iter().any(|(k, _)| k == java_trim(&p.key)))
        .map(|p| p.line)
        .collect();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        // A line continued onto the next (a trailing backslash) is kept: the key then appears
        // twice, and the later value (the override) wins, as in Java.
        if drop.contains(&(i + 1)) && !line.ends_with('\\') {
            out.push_str("# (set by -D)\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (k, v) in overrides {
        out.push_str(&format!("{k}={v}\n"));
    }
    Ok(out)
}

fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

// ---------------------------------------------------------------------------------------------
// Java number grammars

/// `Long.parseLong(s)`: an optional sign and decimal digits.
fn java_parse_long(s: &str) -> Option<i64> {
    let (negative, digits) = split_sign(s);
    parse_magnitude(digits, 10, negative)
}

/// `Long.decode(s)` (what `Integer.getInteger`/`Long.getLong` use): an optional sign, then
/// `0x`/`0X`/`#` for hex, a leading `0` for octal, or decimal.
fn java_decode_long(s: &str) -> Option<i64> {
    let (negative, rest) = split_sign(s);
    let (radix, digits) = if let Some(hex) = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))
        .or_else(|| rest.strip_prefix('#'))
    {
        (16, hex)
    } else if rest.len() > 1 && rest.starts_with('0') {
        (8, &rest[1..])
    } else {
        (10, rest)
    };
    parse_magnitude(digits, radix, negative)
}

fn split_sign(s: &str) -> (bool, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

fn parse_magnitude(digits: &str, radix: u32, negative: bool) -> Option<i64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: i128 = 0;
    for c in digits.chars() {
        value = value * i128::from(radix) + i128::from(c.to_digit(radix)?);
        if value > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

/// Which integer grammar a key's value follows in ZooKeeper.
#[derive(Clone, Copy)]
enum Grammar {
    /// `Integer.parseInt`/`Long.parseLong` (keys `QuorumPeerConfig` parses itself).
    Decimal,
    /// `Integer.getInteger`/`Long.getLong` (keys read back as system properties).
    Decode,
}

fn invalid(key: &str, value: &str, location: Location, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        location,
        reason: reason.into(),
    }
}

fn parse_int(
    key: &str,
    value: &str,
    location: Location,
    grammar: Grammar,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let parsed = match grammar {
        Grammar::Decimal => java_parse_long(value),
        Grammar::Decode => java_decode_long(value),
    };
    match parsed {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(_) => Err(invalid(key, value, location, format!("must be between {min} and {max}"))),
        None => Err(invalid(key, value, location, "not an integer")),
    }
}

fn parse_u32(
    key: &str,
    value: &str,
    loc: Location,
    g: Grammar,
    min: u32,
) -> Result<u32, ConfigError> {
    parse_int(key, value, loc, g, i64::from(min), i64::from(i32::MAX)).map(|n| n as u32)
}

fn parse_port(key: &str, value: &str, location: Location) -> Result<u16, ConfigError> {
    parse_int(key, value, location, Grammar::Decimal, 1, 65535).map(|n| n as u16)
}

fn parse_bool(key: &str, value: &str, location: Location) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(invalid(key, value, location, "expected true/false (or yes/no)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Server lines

/// Role of a server in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LearnerType {
    /// Votes in elections and in the commit quorum.
    Participant,
    /// Follows the leader without voting.
    Observer,
}

impl LearnerType {
    /// The ordinal ZooKeeper prints in `conf` (`peerType=`): 0 participant, 1 observer.
    pub fn ordinal(self) -> u8 {
        match self {
            LearnerType::Participant => 0,
            LearnerType::Observer => 1,
        }
    }

    /// Lower-case name as in a server line.
    pub fn as_str(self) -> &'static str {
        match self {
            LearnerType::Participant => "participant",
            LearnerType::Observer => "observer",
        }
    }

    fn parse(s: &str) -> Option<LearnerType> {
        match java_trim(s).to_ascii_lowercase().as_str() {
            "participant" => Some(LearnerType::Participant),
            "observer" => Some(LearnerType::Observer),
            _ => None,
        }
    }
}

impl fmt::Display for LearnerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host (name or IP literal, IPv6 without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host as written (not resolved).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl HostPort {
    /// `host:port`, with brackets around an IPv6 literal (ZooKeeper's `delimitedHostString`).
    pub fn delimited(&self) -> String {
        format!("{}:{}", delimited_host(&self.host), self.port)
    }

    /// Whether the host is the wildcard address.
    pub fn is_wildcard(&self) -> bool {
        matches!(self.host.as_str(), "0.0.0.0" | "::" | "0:0:0:0:0:0:0:0")
    }
}

fn delimited_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// One `host:quorumPort:electionPort` group of a server line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuorumAddress {
    /// Host as written (IPv6 without brackets).
    pub host: String,
    /// Port followers connect to the leader on.
    pub quorum_port: u16,
    /// Port of leader election.
    pub election_port: u16,
}

/// A `server.N=…` line: `host:qport:eport[:participant|:observer][;[clientHost:]clientPort]`,
/// with several `host:qport:eport` groups joined by `|` when `multiAddress.enabled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumServer {
    /// N.
    pub id: u64,
    /// The address groups, in the order written (at least one).
    pub addresses: Vec<QuorumAddress>,
    /// Role (participant unless the line says observer).
    pub learner_type: LearnerType,
    /// The client address after `;`, if the line has one (no host = [`WILDCARD_HOST`]).
    pub client_address: Option<HostPort>,
    /// Where the line is.
    pub location: Location,
}

impl QuorumServer {
    /// Parses the value of a `server.<id>` line.
    pub fn parse(id: u64, value: &str, location: Location) -> Result<QuorumServer, ConfigError> {
        let key = format!("server.{id}");
        let bad = |reason: String| invalid(&key, value, location, reason);
        let form = "expected host:port:port[:participant|:observer][;[host:]port], several \
                    host:port:port groups joined by |";
        let mut halves: Vec<&str> = value.split(';').collect();
        // Java's split drops trailing empty strings: "h:1:2;" has no client part.
        while halves.len() > 1 && halves.last() == Some(&"") {
            halves.pop();
        }
        if halves.len() > 2 {
            return Err(bad(form.to_string()));
        }
        let client_address = match halves.get(1) {
            None => None,
            Some(client) => {
                let parts = host_and_port(client).map_err(&bad)?;
                let (host, port) = match parts.as_slice() {
                    [port] => (WILDCARD_HOST.to_string(), port),
                    [host, port] if !host.is_empty() => (host.clone(), port),
                    _ => return Err(bad(format!("client address {client:?}: {form}"))),
                };
                Some(HostPort { host, port: server_port(port).map_err(&bad)? })
            }
        };
        let mut addresses = Vec::new();
        let mut role: Option<LearnerType> = None;
        for group in halves[0].split('|') {
            let parts = host_and_port(group).map_err(&bad)?;
            if !(3..=4).contains(&parts.len()) || parts[0].is_empty() {
                return Err(bad(form.to_string()));
            }
            let quorum_port = server_port(&parts[1]).map_err(&bad)?;
            let election_port = server_port(&parts[2]).map_err(&bad)?;
            if quorum_port == election_port {
                return Err(bad(format!(
                    "quorum and election port must differ (both {quorum_port})"
                )));
            }
            if let Some(t) = parts.get(3) {
                let t = LearnerType::parse(t)
                    .ok_or_else(|| bad(format!("unrecognised peer type {t:?}")))?;
                if role.is_some_and(|r| r != t) {
                    return Err(bad("multiple addresses must have the same role".to_string()));
                }
                role = Some(t);
            }
            addresses.push(QuorumAddress { host: parts[0].clone(), quorum_port, election_port });
        }
        Ok(QuorumServer {
            id,
            addresses,
            learner_type: role.unwrap_or(LearnerType::Participant),
            client_address,
            location,
        })
    }

    /// The value as ZooKeeper writes it back (`QuorumServer.toString`, used in `conf`, in
    /// `/zookeeper/config` and in dynamic config files): address groups sorted by host, the
    /// role always spelled out, the client address only if the line had one.
    pub fn config_value(&self) -> String {
        let mut groups = self.addresses.clone();
        groups.sort_by(|a, b| a.host.cmp(&b.host));
        let mut out = groups
            .iter()
            .map(|a| format!("{}:{}:{}", delimited_host(&a.host), a.quorum_port, a.election_port))
            .collect::<Vec<_>>()
            .join("|");
        out.push(':');
        out.push_str(self.learner_type.as_str());
        if let Some(client) = &self.client_address {
            out.push(';');
            out.push_str(&client.delimited());
        }
        out
    }
}

/// ZooKeeper's `ConfigUtils.getHostAndPort`: `[v6]:a:b` or `host:a:b` split on `:`.
fn host_and_port(s: &str) -> Result<Vec<String>, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']').ok_or_else(|| format!("{s:?} has '[' but no matching ']'"))?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let mut parts = vec![host.to_string()];
        if after.is_empty() {
            return Ok(parts);
        }
        let ports = after
            .strip_prefix(':')
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("{s:?} needs a port after ']:'"))?;
        parts.extend(ports.split(':').map(str::to_string));
        Ok(parts)
    } else {
        Ok(s.split(':').map(str::to_string).collect())
    }
}

fn server_port(s: &str) -> Result<u16, String> {
    match java_parse_long(s) {
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("{s:?} is not a port (1-65535)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Files

/// Access to the files a configuration refers to, so parsing stays testable without a disk.
pub trait ConfigFiles {
    /// Content of `<data_dir>/myid`, or `None` if there is no such file.
    fn read_myid(&self, data_dir: &Path) -> io::Result<Option<String>>;
    /// Content of the dynamic config file named by `dynamicConfigFile=`.
    fn read_dynamic_config(&self, path: &Path) -> io::Result<String>;
}

/// [`ConfigFiles`] on the real file system (relative paths are relative to the current
/// directory, as in ZooKeeper).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFiles;

impl ConfigFiles for RealFiles {
    fn read_myid(&self, data_dir: &Path) -> io::Result<Option<String>> {
        let path = data_dir.join("myid");
        if !path.is_file() {
            return Ok(None);
        }
        read_text(&path).map(Some)
    }

    fn read_dynamic_config(&self, path: &Path) -> io::Result<String> {
        read_text(path)
    }
}

/// No files at all: no `myid`, and a dynamic config file is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl ConfigFiles for NoFiles {
    fn read_myid(&self, _data_dir: &Path) -> io::Result<Option<String>> {
        Ok(None)
    }

    fn read_dynamic_config(&self, _path: &Path) -> io::Result<String> {
        Err(io::Error::new(io::ErrorKind::NotFound, "no files available to this parse"))
    }
}

/// Reads a text file as UTF-8, or as Latin-1 (Java's reading of properties) if it is not UTF-8.
fn read_text(path: &Path) -> io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// The configuration

/// A complete, validated configuration with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    // Directories.
    /// `dataDir` (required): snapshots live in `<dataDir>/version-2`, `myid` in `dataDir`.
    pub data_dir: PathBuf,
    /// `dataLogDir` (default: `dataDir`): transaction logs in `<dataLogDir>/version-2`.
    pub data_log_dir: PathBuf,
    /// `dynamicConfigFile`.
    pub dynamic_config_file: Option<PathBuf>,

    // Client connections.
    /// `clientPort` (0 or unset = none).
    pub client_port: Option<u16>,
    /// `clientPortAddress` (requires `clientPort`).
    pub client_port_address: Option<String>,
    /// Where clients connect: from `clientPort`/`clientPortAddress`, or from this server's
    /// `server.N` line (which wins, as in ZooKeeper). `None`: no client port at all.
    pub client_address: Option<HostPort>,
    /// `secureClientPort` (TLS only; settings from `ssl.*`).
    pub secure_client_port: Option<u16>,
    /// `sslQuorum`: TLS between servers (settings from `ssl.quorum.*`).
    pub ssl_quorum: bool,
    /// `quorum.auth.*`: SASL between servers.
    pub quorum_sasl: QuorumSaslKeys,
    /// `portUnification`: the quorum ports take TLS and plaintext peers.
    pub port_unification: bool,
    /// `sslQuorumReloadCertFiles`: the quorum key and trust stores are read again when their
    /// files change.
    pub ssl_quorum_reload_cert_files: bool,
    /// `secureClientPortAddress`.
    pub secure_client_port_address: Option<String>,
    /// `clientPortListenBacklog` (-1 = the OS default).
    pub client_port_listen_backlog: i32,
    /// `maxClientCnxns`: connections per client IP (0 = unlimited).
    pub max_client_cnxns: u32,
    /// `maxCnxns`: connections in total (0 = unlimited).
    pub max_cnxns: u32,
    /// `globalOutstandingLimit`: requests in flight before reading from sockets pauses.
    pub global_outstanding_limit: u32,

    // Time.
    /// `tickTime` in milliseconds (default 3000).
    pub tick_time_ms: u32,
    /// `minSessionTimeout` (default 2 × tickTime).
    pub min_session_timeout_ms: u32,
    /// `maxSessionTimeout` (default 20 × tickTime).
    pub max_session_timeout_ms: u32,

    // Quorum.
    /// `initLimit` in ticks (required in quorum mode).
    pub init_limit: Option<u32>,
    /// `syncLimit` in ticks (required in quorum mode).
    pub sync_limit: Option<u32>,
    /// `connectToLearnerMasterLimit` in ticks (default: `initLimit`).
    pub connect_to_learner_master_limit: Option<u32>,
    /// `electionAlg` (only 3 exists).
    pub election_alg: u32,
    /// `peerType` after reconciling with this server's line.
    pub peer_type: LearnerType,
    /// `syncEnabled`: observers keep a log and snapshots too.
    pub sync_enabled: bool,
    /// `standaloneEnabled`: a single server runs standalone instead of as a quorum of one.
    pub standalone_enabled: bool,
    /// `reconfigEnabled`: the reconfig operation is allowed.
    pub reconfig_enabled: bool,
    /// `corral.test.unsafeCommitWithoutQuorum` (a test-only key, Corral's own): a leader commits
    /// a proposal once its own log holds it, without a quorum — a deliberately broken server
    /// that loses acknowledged writes, for checking that fault tests catch it. Never set it
    /// on a server that holds data anyone needs.
    pub unsafe_commit_without_quorum: bool,
    /// `corral.test.purgeIntervalMs` (a test-only key, Corral's own): autopurge every this many
    /// milliseconds instead of every `autopurge.purgeInterval` hours, so that a benchmark can
    /// measure purges under load. 0 (the default): off.
    pub test_purge_interval_ms: u64,
    /// `corral.test.logStrategy` (a test-only key, Corral's own): the transaction log's flush
    /// strategy by name (`direct`, `uring-pipe`, …; docs/fsync-strategies.md) and, after a
    /// slash, the writes in flight of a pipelined one (`uring-pipe/8`), so that a benchmark can
    /// compare them in the server. Unset: the default (`direct`; `none` with forceSync=no).
    pub test_log_strategy: Option<(corral_engine::log::FlushStrategy, usize)>,
    /// `audit.enable`: write the audit log.
    pub audit_enable: bool,
    /// `corral.slowRequestWarningMs` (default 10000; 0: off): a request answered later than
    /// this after it arrived is counted and warned about (at most once per 10 s).
    pub slow_request_warning_ms: u64,
    /// `corral.stallWarningMs` (default 10000; 0: off): no reply for this long while requests
    /// wait is warned about as a stalled pipeline.
    pub stall_warning_ms: u64,
    /// `corral.audit.file`: where the audit log goes (unset: the server's log).
    pub audit_file: Option<PathBuf>,
    /// `quorumListenOnAllIPs`.
    pub quorum_listen_on_all_ips: bool,
    /// `observerMasterPort`.
    pub observer_master_port: Option<u16>,
    /// `multiAddress.enabled`: server lines may list several address groups.
    pub multi_address_enabled: bool,
    /// `cnxTimeout`: election connection timeout.
    pub cnx_timeout_ms: u32,
    /// `electionPortBindRetry`: attempts to bind the election port, a second apart, before
    /// the server gives up (0: without end), as ZooKeeper's election listener does.
    pub election_port_bind_retry: u32,
    /// `leaderServes`: the leader accepts client connections.
    pub leader_serves: bool,
    /// `server.N` lines by id.
    pub servers: BTreeMap<u64, QuorumServer>,
    /// `group.N` lines (hierarchical quorums): group id → server ids.
    pub groups: BTreeMap<u64, Vec<u64>>,
    /// `weight.N` lines: server id → weight.
    pub weights: BTreeMap<u64, u64>,
    /// Configuration version (`version=` in the file, hex; or the dynamic file's name suffix).
    pub config_version: u64,
    /// This server's id from `<dataDir>/myid`, when there is one.
    pub my_id: Option<u64>,

    // Sessions.
    /// `localSessionsEnabled`.
    pub local_sessions_enabled: bool,
    /// `localSessionsUpgradingEnabled`.
    pub local_sessions_upgrading_enabled: bool,

    // Storage.
    /// `snapCount`: snapshot after about this many txns (at least 2).
    pub snap_count: u32,
    /// `snapSizeLimitInKb`: snapshot when the log grows past this (≤ 0 disables).
    pub snap_size_limit_kb: i64,
    /// `txnLogSizeLimitInKb`: roll the log at this size (-1 = off).
    pub txn_log_size_limit_kb: i64,
    /// `commitLogCount`: committed proposals kept in memory for DIFF syncs.
    pub commit_log_count: u32,
    /// `preAllocSize` in KiB: the log grows in blocks of this size.
    pub pre_alloc_size_kb: u64,
    /// `forceSync`: fsync the log (`no` skips it).
    pub force_sync: bool,
    /// `fsync.warningthresholdms`: warn when an fsync takes longer.
    pub fsync_warning_threshold_ms: u64,
    /// `autopurge.snapRetainCount` (at least 3).
    pub autopurge_snap_retain_count: u32,
    /// `autopurge.purgeInterval` in hours (0 = off).
    pub autopurge_purge_interval_hours: u32,
    /// `digest.enabled`: tree digests in txns and snapshots.
    pub digest_enabled: bool,
    /// `snapshot.compression.method`: "" (none), "gz" or "snappy".
    pub snapshot_compression_method: String,
    /// `closeSessionTxn.enabled`: closeSession txns carry the ephemeral paths.
    pub close_session_txn_enabled: bool,

    // Protocol and access.
    /// `jute.maxbuffer`: largest record accepted, in bytes.
    pub jute_max_buffer: u32,
    /// `jute.maxbuffer.extrasize` (`-D zookeeper.jute.maxbuffer.extrasize`): how far beyond
    /// `jute.maxbuffer` a txn may go (`None`: as much again as `jute.maxbuffer`).
    pub jute_max_buffer_extrasize: Option<u32>,
    /// `nio.sessionlessCnxnTimeout` (`-D zookeeper.nio.sessionlessCnxnTimeout`): ms a new
    /// connection has to complete its handshake (`None`: 10 000).
    pub sessionless_cnxn_timeout_ms: Option<u64>,
    /// `sessionRequireClientSASLAuth`: every request but auth and SASL needs a `sasl` id
    /// (as `enforce.auth.enabled=true` with `enforce.auth.schemes=sasl`).
    pub session_require_client_sasl_auth: bool,
    /// `enforce.auth.enabled`: every request but auth and SASL needs an id of one of
    /// `enforce.auth.schemes`.
    pub enforce_auth_enabled: bool,
    /// `enforce.auth.schemes` (comma-separated, trimmed).
    pub enforce_auth_schemes: Vec<String>,
    /// `extendedTypesEnabled`: TTL nodes (and server ids ≤ 254).
    pub extended_types_enabled: bool,
    /// `readonlymode.enabled`: serve read-only clients when cut off from the quorum.
    pub read_only_mode_enabled: bool,
    /// `skipACL`: no ACL checks at all.
    pub skip_acl: bool,
    /// `DigestAuthenticationProvider.superDigest` (`super:<base64 sha1>`).
    pub super_digest: Option<String>,
    /// `authProvider.N` entries.
    pub auth_providers: BTreeMap<String, String>,
    /// `4lw.commands.whitelist` as written (`None`: not set, ZooKeeper's default `srvr`).
    pub four_letter_word_whitelist: Option<String>,

    /// `metricsProvider.*`.
    pub metrics_provider: MetricsProviderConfig,

    // Admin server.
    /// `admin.enableServer`.
    pub admin_enable_server: bool,
    /// `admin.serverAddress`.
    pub admin_server_address: String,
    /// `admin.serverPort`.
    pub admin_server_port: u16,
    /// `admin.commandURL` (default `/commands`).
    pub admin_command_url: String,
    /// `admin.idleTimeout` in ms (default 30000).
    pub admin_idle_timeout_ms: u64,
    /// `admin.snapshot.enabled` (default true).
    pub admin_snapshot_enabled: bool,
    /// `admin.restore.enabled` (default true).
    pub admin_restore_enabled: bool,
    /// `corral.admin.restoreMaxBytes` (default 1 GiB): the largest snapshot the AdminServer's
    /// `restore` reads.
    pub admin_restore_max_bytes: u64,
    /// `admin.rateLimiterIntervalInMS` (default 300000): at most one snapshot per interval.
    pub admin_rate_limiter_interval_ms: u64,
    /// The configuration file's text, when it was read from a file (`initial_configuration`).
    pub initial_text: Option<String>,

    // Bookkeeping.
    /// What ZooKeeper would have as system properties after reading this configuration
    /// (`zookeeper.<key>` for every key it does not parse itself, plus `jute.maxbuffer` and
    /// `readonlymode.enabled`), for the `sysp` admin command.
    pub system_properties: BTreeMap<String, String>,
    /// Everything worth telling the operator, in the order found.
    pub warnings: Vec<ConfigWarning>,
}

/// How ZooKeeper treats a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// Parsed by `QuorumPeerConfig` itself; not a system property.
    File,
    /// Turned into the system property `zookeeper.<key>` and read from there.
    SystemProperty,
    /// A bare JVM property (no `zookeeper.` prefix).
    PlainProperty,
    /// `server.N`, `group.N`, `weight.N`, `version`: the ensemble's membership.
    Membership,
    /// Known to ZooKeeper, parsed by it, not acted on by Corral.
    IgnoredFile(&'static str),
    /// Known to ZooKeeper as a system property, not acted on by Corral.
    IgnoredProperty(&'static str),
    Unknown,
}

const NO_JVM: &str = "Corral does not run on a JVM";
const NOT_CONFIGURABLE: &str = "Corral has a single implementation of this";

fn key_kind(key: &str) -> KeyKind {
    use KeyKind::*;
    match key {
        "dataDir"
        | "dataLogDir"
        | "clientPort"
        | "localSessionsEnabled"
        | "localSessionsUpgradingEnabled"
        | "clientPortAddress"
        | "observerMasterPort"
        | "clientPortListenBacklog"
        | "tickTime"
        | "maxClientCnxns"
        | "minSessionTimeout"
        | "maxSessionTimeout"
        | "initLimit"
        | "syncLimit"
        | "connectToLearnerMasterLimit"
        | "electionAlg"
        | "quorumListenOnAllIPs"
        | "peerType"
        | "syncEnabled"
        | "dynamicConfigFile"
        | "autopurge.snapRetainCount"
        | "autopurge.purgeInterval"
        | "standaloneEnabled"
        | "reconfigEnabled"
        | "multiAddress.enabled"
        | "corral.test.unsafeCommitWithoutQuorum"
        | "corral.test.purgeIntervalMs"
        | "corral.test.logStrategy"
        | "corral.audit.file"
        | "corral.slowRequestWarningMs"
        | "corral.stallWarningMs"
        | "corral.admin.restoreMaxBytes"
        | "secureClientPort"
        | "secureClientPortAddress" => File,
        "sslQuorum" | "portUnification" | "sslQuorumReloadCertFiles" => File,
        "multiAddress.reachabilityCheckTimeoutMs" | "multiAddress.reachabilityCheckEnabled" => {
            IgnoredFile("Corral does not probe peer addresses")
        }
        "quorum.cnxn.threads.size" => {
            IgnoredFile("Corral's quorum connections have no thread pool")
        }
        "oraclePath" => IgnoredFile("the oracle quorum is not supported by Corral"),
        "jvm.pause.info-threshold.ms"
        | "jvm.pause.warn-threshold.ms"
        | "jvm.pause.sleep.time.ms"
        | "jvm.pause.monitor" => IgnoredFile(NO_JVM),
        "metricsProvider.className"
        | "metricsProvider.httpHost"
        | "metricsProvider.httpPort"
        | "metricsProvider.exportJvmInfo" => File,
        k if k.starts_with("metricsProvider.") => {
            IgnoredFile("not read by Corral's Prometheus endpoint")
        }
        "quorum.auth.enableSasl"
        | "quorum.auth.learnerRequireSasl"
        | "quorum.auth.serverRequireSasl"
        | "quorum.auth.learner.saslLoginContext"
        | "quorum.auth.server.saslLoginContext"
        | "quorum.auth.kerberos.servicePrincipal" => File,
        k if k.starts_with("quorum.auth.") => IgnoredFile("not a key ZooKeeper 3.8 reads"),
        k if k.starts_with("server.") || k.starts_with("group") || k.starts_with("weight") => {
            Membership
        }
        "version" => Membership,
        "4lw.commands.whitelist"
        | "snapCount"
        | "snapSizeLimitInKb"
        | "txnLogSizeLimitInKb"
        | "commitLogCount"
        | "preAllocSize"
        | "globalOutstandingLimit"
        | "forceSync"
        | "skipACL"
        | "fsync.warningthresholdms"
        | "extendedTypesEnabled"
        | "DigestAuthenticationProvider.superDigest"
        | "maxCnxns"
        | "cnxTimeout"
        | "electionPortBindRetry"
        | "leaderServes"
        | "digest.enabled"
        | "snapshot.compression.method"
        | "closeSessionTxn.enabled"
        | "admin.enableServer"
        | "admin.serverAddress"
        | "admin.serverPort"
        | "admin.commandURL"
        | "admin.idleTimeout"
        | "admin.snapshot.enabled"
        | "admin.restore.enabled"
        | "admin.rateLimiterIntervalInMS"
        | "audit.enable" => SystemProperty,
        k if k.starts_with("authProvider.") => SystemProperty,
        "jute.maxbuffer"
        | "readonlymode.enabled"
        | "java.security.auth.login.config"
        | "java.security.krb5.conf" => PlainProperty,
        "security.auth_to_local" => SystemProperty,
        "admin.portUnification" | "admin.forceHttps" | "admin.needClientAuth" => SystemProperty,
        "serverCnxnFactory" => IgnoredProperty(NOT_CONFIGURABLE),
        "DigestAuthenticationProvider.digestAlg" => {
            IgnoredProperty("Corral's digest scheme is SHA1, ZooKeeper's default")
        }
        "jute.maxbuffer.extrasize" | "nio.sessionlessCnxnTimeout" => SystemProperty,
        "maxResponseCacheSize" | "maxGetChildrenResponseCacheSize" => {
            IgnoredProperty(NOT_CONFIGURABLE)
        }
        k if k.starts_with("ssl.quorum.") => SystemProperty,
        "ssl.keyStore.location"
        | "ssl.keyStore.password"
        | "ssl.keyStore.passwordPath"
        | "ssl.keyStore.type"
        | "ssl.trustStore.location"
        | "ssl.trustStore.password"
        | "ssl.trustStore.passwordPath"
        | "ssl.trustStore.type"
        | "ssl.clientAuth"
        | "ssl.protocol"
        | "ssl.enabledProtocols"
        | "ssl.ciphersuites"
        | "ssl.hostnameVerification"
        | "ssl.handshakeDetectionTimeoutMillis"
        | "ssl.authProvider"
        | "client.portUnification"
        | "X509AuthenticationProvider.superUser" => SystemProperty,
        "ssl.crl" | "ssl.ocsp" => {
            IgnoredProperty("certificate revocation checking is not supported by Corral yet")
        }
        "ssl.context.supplier.class" => IgnoredProperty(NO_JVM),
        k if k.starts_with("ssl.") || k.starts_with("client.") => IgnoredProperty(NOT_CONFIGURABLE),
        "sessionRequireClientSASLAuth" | "enforce.auth.enabled" | "enforce.auth.schemes" => {
            SystemProperty
        }
        "allowSaslFailedClients"
        | "sasl.serverconfig"
        | "superUser"
        | "SASLAuthenticationProvider.superPassword"
        | "kerberos.removeHostFromPrincipal"
        | "kerberos.removeRealmFromPrincipal" => SystemProperty,
        k if k.starts_with("superUser.") => SystemProperty,
        "sasl.enabled" => IgnoredProperty("a client setting (zookeeper.sasl.client)"),
        _ => Unknown,
    }
}

/// The `quorum.auth.*` keys (SASL between servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSaslKeys {
    /// `quorum.auth.enableSasl`.
    pub enable: bool,
    /// `quorum.auth.learnerRequireSasl`: this server, dialling, authenticates.
    pub learner_required: bool,
    /// `quorum.auth.serverRequireSasl`: peers dialling this server must authenticate.
    pub server_required: bool,
    /// `quorum.auth.learner.saslLoginContext` (default QuorumLearner).
    pub learner_context: String,
    /// `quorum.auth.server.saslLoginContext` (default QuorumServer).
    pub server_context: String,
    /// `quorum.auth.kerberos.servicePrincipal` (default `zkquorum/localhost`; `_HOST` stands
    /// for the host, lower-cased, of the server dialled as its `server.N` line names it).
    pub service_principal: String,
}

impl Default for QuorumSaslKeys {
    fn default() -> Self {
        QuorumSaslKeys {
            enable: false,
            learner_required: false,
            server_required: false,
            learner_context: "QuorumLearner".into(),
            server_context: "QuorumServer".into(),
            service_principal: "zkquorum/localhost".into(),
        }
    }
}

/// Values `QuorumPeerConfig` derives after reading every key.
#[derive(Default)]
struct Pending {
    data_dir: Option<(PathBuf, Location)>,
    data_log_dir: Option<PathBuf>,
    client_port_location: Option<Location>,
    client_port_address_location: Option<Location>,
    secure_client_port_address_location: Option<Location>,
    min_session_timeout: Option<(u32, Location)>,
    max_session_timeout: Option<(u32, Location)>,
    snap_retain_count: Option<(i64, Location)>,
    peer_type_set: bool,
    dynamic_config_location: Option<Location>,
    membership: Vec<(String, String, Location)>,
    whitelist_location: Option<Location>,
}

impl Config {
    /// A configuration with ZooKeeper's defaults and the given `dataDir`, before any key is
    /// read.
    fn with_defaults(data_dir: PathBuf) -> Config {
        Config {
            data_log_dir: data_dir.clone(),
            data_dir,
            dynamic_config_file: None,
            client_port: None,
            client_port_address: None,
            client_address: None,
            secure_client_port: None,
            secure_client_port_address: None,
            ssl_quorum: false,
            port_unification: false,
            ssl_quorum_reload_cert_files: false,
            quorum_sasl: QuorumSaslKeys::default(),
            client_port_listen_backlog: -1,
            max_client_cnxns: DEFAULT_MAX_CLIENT_CNXNS,
            max_cnxns: 0,
            global_outstanding_limit: DEFAULT_GLOBAL_OUTSTANDING_LIMIT,
            tick_time_ms: DEFAULT_TICK_TIME_MS,
            min_session_timeout_ms: 2 * DEFAULT_TICK_TIME_MS,
            max_session_timeout_ms: 20 * DEFAULT_TICK_TIME_MS,
            init_limit: None,
            sync_limit: None,
            connect_to_learner_master_limit: None,
            election_alg: ELECTION_ALG_FAST_LEADER_ELECTION,
            peer_type: LearnerType::Participant,
            sync_enabled: true,
            standalone_enabled: true,
            reconfig_enabled: false,
            unsafe_commit_without_quorum: false,
            test_purge_interval_ms: 0,
            test_log_strategy: None,
            audit_enable: false,
            slow_request_warning_ms: 10_000,
            stall_warning_ms: 10_000,
            audit_file: None,
            quorum_listen_on_all_ips: false,
            observer_master_port: None,
            multi_address_enabled: false,
            cnx_timeout_ms: DEFAULT_CNX_TIMEOUT_MS,
            election_port_bind_retry: 3,
            leader_serves: true,
            servers: BTreeMap::new(),
            groups: BTreeMap::new(),
            weights: BTreeMap::new(),
            config_version: 0,
            my_id: None,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            snap_count: DEFAULT_SNAP_COUNT,
            snap_size_limit_kb: DEFAULT_SNAP_SIZE_LIMIT_KB,
            txn_log_size_limit_kb: -1,
            commit_log_count: DEFAULT_COMMIT_LOG_COUNT,
            pre_alloc_size_kb: DEFAULT_PRE_ALLOC_SIZE_KB,
            force_sync: true,
            fsync_warning_threshold_ms: DEFAULT_FSYNC_WARNING_THRESHOLD_MS,
            autopurge_snap_retain_count: MIN_SNAP_RETAIN_COUNT,
            autopurge_purge_interval_hours: 0,
            digest_enabled: true,
            snapshot_compression_method: String::new(),
            close_session_txn_enabled: true,
            jute_max_buffer: DEFAULT_JUTE_MAX_BUFFER,
            jute_max_buffer_extrasize: None,
            sessionless_cnxn_timeout_ms: None,
            session_require_client_sasl_auth: false,
            enforce_auth_enabled: false,
            enforce_auth_schemes: Vec::new(),
            extended_types_enabled: false,
            read_only_mode_enabled: false,
            skip_acl: false,
            super_digest: None,
            auth_providers: BTreeMap::new(),
            four_letter_word_whitelist: None,
            admin_enable_server: true,
            admin_server_address: WILDCARD_HOST.to_string(),
            admin_server_port: DEFAULT_ADMIN_SERVER_PORT,
            admin_command_url: "/commands".to_string(),
            metrics_provider: MetricsProviderConfig::default(),
            admin_idle_timeout_ms: 30_000,
            admin_snapshot_enabled: true,
            admin_restore_enabled: true,
            admin_restore_max_bytes: 1 << 30,
            admin_rate_limiter_interval_ms: 300_000,
            initial_text: None,
            system_properties: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// The built-in configuration of a bare `corral` ([`DEFAULT_STANDALONE_ZOO_CFG`]).
    pub fn default_standalone() -> Config {
        Config::parse_str(DEFAULT_STANDALONE_ZOO_CFG).expect("the built-in zoo.cfg is valid")
    }

    /// Reads zoo.cfg at `path`, then `<dataDir>/myid` and the dynamic config file if any.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            read_text(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
        let mut config = Config::parse_with(&text, &RealFiles)?;
        config.initial_text = Some(text);
        Ok(config)
    }

    /// Reads zoo.cfg at `path` (or the built-in configuration) with some of its keys given
    /// other values (`corral -D key=value` for keys ZooKeeper reads only from the file, such
    /// as `clientPort` or `dataDir`): the file's lines for those keys are left out and the
    /// given values used instead.
    pub fn load_with_overrides(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => {
                read_text(path).map_err(|source| ConfigError::Io { path: path.into(), source })?
            }
            None => DEFAULT_STANDALONE_ZOO_CFG.to_string(),
        };
        let replaced = with_overrides(&text, overrides)?;
        let mut config = match path {
            Some(_) => Config::parse_with(&replaced, &RealFiles)?,
            None => Config::parse_str(&replaced)?,
        };
        if path.is_some() {
            config.initial_text = Some(text);
        }
        Ok(config)
    }

    /// Parses zoo.cfg text without reading any other file (no `myid`: quorum mode fails).
    pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, &NoFiles)
    }

    /// Parses zoo.cfg text, reading `myid` and the dynamic config file through `files`.
    pub fn parse_with(text: &str, files: &dyn ConfigFiles) -> Result<Config, ConfigError> {
        let properties = parse_properties(text)?;
        // Java keeps the last of duplicate keys; report the others.
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        let mut warnings = Vec::new();
        for (index, p) in properties.iter().enumerate() {
            if let Some(prev) = last.insert(java_trim(&p.key), index) {
                warnings.push(ConfigWarning::DuplicateKey {
                    key: java_trim(&p.key).to_string(),
                    first: Location::Line(properties[prev].line),
                    second: Location::Line(p.line),
                });
            }
        }
        let mut config = Config::with_defaults(PathBuf::new());
        config.warnings = warnings;
        let mut pending = Pending::default();
        for (index, p) in properties.iter().enumerate() {
            let key = java_trim(&p.key);
            if last.get(key) != Some(&index) {
                continue;
            }
            config.apply_file_key(
                key,
                java_trim(&p.value),
                Location::Line(p.line),
                &mut pending,
            )?;
        }
        config.finish(pending, files)?;
        for w in &config.warnings {
            tracing::warn!("zoo.cfg: {w}");
        }
        Ok(config)
    }

    fn warn(&mut self, warning: ConfigWarning) {
        self.warnings.push(warning);
    }

    fn apply_file_key(
        &mut self,
        key: &str,
        value: &str,
        loc: Location,
        pending: &mut Pending,
    ) -> Result<(), ConfigError> {
        use Grammar::Decimal;
        match key_kind(key) {
            KeyKind::SystemProperty | KeyKind::PlainProperty | KeyKind::IgnoredProperty(_) => {
                return self.apply_property_key(key, value, loc, &mut pending.whitelist_location);
            }
            KeyKind::Membership => {
                if key.starts_with("server.") && pending.dynamic_config_location.is_some() {
                    return Err(ConfigError::Inconsistent {
                        message: format!("{key} must be in the dynamic config file"),
                        location: loc,
                    });
                }
                pending.membership.push((key.to_string(), value.to_string(), loc));
                return Ok(());
            }
            KeyKind::IgnoredFile(reason) => {
                self.warn(ConfigWarning::Ignored { key: key.to_string(), location: loc, reason });
            }
            KeyKind::Unknown => {
                self.warn(ConfigWarning::UnknownKey { key: key.to_string(), location: loc });
                self.system_properties.insert(format!("zookeeper.{key}"), value.to_string());
                return Ok(());
            }
            KeyKind::File => {}
        }
        match key {
            "dataDir" | "dataLogDir" | "dynamicConfigFile" if value.is_empty() => {
                return Err(invalid(key, value, loc, "empty path"));
            }
            "dataDir" => pending.data_dir = Some((PathBuf::from(value), loc)),
            "dataLogDir" => pending.data_log_dir = Some(PathBuf::from(value)),
            "dynamicConfigFile" => {
                if let Some(server) = pending.membership.iter().find(|m| m.0.starts_with("server."))
                {
                    return Err(ConfigError::Inconsistent {
                        message: format!("{} must be in the dynamic config file", server.0),
                        location: server.2,
                    });
                }
                self.dynamic_config_file = Some(PathBuf::from(value));
                pending.dynamic_config_location = Some(loc);
            }
            "clientPort" => {
                // 0 means "not set" in ZooKeeper.
                let port = parse_int(key, value, loc, Decimal, 0, 65535)?;
                self.client_port = (port != 0).then_some(port as u16);
                pending.client_port_location = Some(loc);
            }
            "clientPortAddress" => {
                self.client_port_address = Some(value.to_string());
                pending.client_port_address_location = Some(loc);
            }
            "secureClientPort" => {
                let port = parse_int(key, value, loc, Decimal, 0, 65535)?;
                self.secure_client_port = (port != 0).then_some(port as u16);
            }
            "secureClientPortAddress" => {
                self.secure_client_port_address = Some(value.to_string());
                pending.secure_client_port_address_location = Some(loc);
            }
            "observerMasterPort" => {
                let port = parse_int(key, value, loc, Decimal, 0, 65535)?;
                self.observer_master_port = (port > 0).then_some(port as u16);
            }
            "clientPortListenBacklog" => {
                self.client_port_listen_backlog =
                    parse_int(key, value, loc, Decimal, -1, i64::from(i32::MAX))? as i32;
            }
            "tickTime" => self.tick_time_ms = parse_u32(key, value, loc, Decimal, 1)?,
            "maxClientCnxns" => self.max_client_cnxns = parse_u32(key, value, loc, Decimal, 0)?,
            "minSessionTimeout" | "maxSessionTimeout" => {
                // -1 means "not set" in ZooKeeper.
                let n = parse_int(key, value, loc, Decimal, -1, i64::from(i32::MAX))?;
                let slot = if key == "minSessionTimeout" {
                    &mut pending.min_session_timeout
                } else {
                    &mut pending.max_session_timeout
                };
                *slot = (n >= 0).then_some((n as u32, loc));
            }
            "initLimit" | "syncLimit" | "connectToLearnerMasterLimit" => {
                // 0 means "not set" in ZooKeeper.
                let n = parse_u32(key, value, loc, Decimal, 0)?;
                let n = (n != 0).then_some(n);
                match key {
                    "initLimit" => self.init_limit = n,
                    "syncLimit" => self.sync_limit = n,
                    _ => self.connect_to_learner_master_limit = n,
                }
            }
            "electionAlg" => {
                let n = parse_int(key, value, loc, Decimal, i64::MIN, i64::MAX)?;
                if n != i64::from(ELECTION_ALG_FAST_LEADER_ELECTION) {
                    return Err(invalid(key, value, loc, "only 3 (FastLeaderElection) exists"));
                }
            }
            "peerType" => {
                self.peer_type = LearnerType::parse(value)
                    .ok_or_else(|| invalid(key, value, loc, "expected participant or observer"))?;
                pending.peer_type_set = true;
            }
            "autopurge.snapRetainCount" => {
                let n =
                    parse_int(key, value, loc, Decimal, i64::from(i32::MIN), i64::from(i32::MAX))?;
                pending.snap_retain_count = Some((n, loc));
            }
            "autopurge.purgeInterval" => {
                // ZooKeeper treats a negative interval like 0 (purging off).
                let n =
                    parse_int(key, value, loc, Decimal, i64::from(i32::MIN), i64::from(i32::MAX))?;
                self.autopurge_purge_interval_hours = n.max(0) as u32;
            }
            "localSessionsEnabled" => self.local_sessions_enabled = parse_bool(key, value, loc)?,
            "localSessionsUpgradingEnabled" => {
                self.local_sessions_upgrading_enabled = parse_bool(key, value, loc)?
            }
            "quorumListenOnAllIPs" => self.quorum_listen_on_all_ips = parse_bool(key, value, loc)?,
            "syncEnabled" => self.sync_enabled = parse_bool(key, value, loc)?,
            "standaloneEnabled" => self.standalone_enabled = parse_bool(key, value, loc)?,
            "reconfigEnabled" => self.reconfig_enabled = parse_bool(key, value, loc)?,
            "corral.test.unsafeCommitWithoutQuorum" => {
                self.unsafe_commit_without_quorum = parse_bool(key, value, loc)?
            }
            "corral.test.purgeIntervalMs" => {
                let n = parse_int(key, value, loc, Decimal, 0, i64::from(i32::MAX))?;
                self.test_purge_interval_ms = n as u64;
            }
            "corral.slowRequestWarningMs" => {
                self.slow_request_warning_ms =
                    parse_int(key, value, loc, Decimal, 0, i64::from(i32::MAX))? as u64
            }
            "corral.admin.restoreMaxBytes" => {
                self.admin_restore_max_bytes =
                    parse_int(key, value, loc, Decimal, 0, i64::MAX)? as u64
            }
            "corral.stallWarningMs" => {
                self.stall_warning_ms =
                    parse_int(key, value, loc, Decimal, 0, i64::from(i32::MAX))? as u64
            }
            "corral.audit.file" => {
                if value.is_empty() {
                    return Err(invalid(key, value, loc, "empty path"));
                }
                self.audit_file = Some(PathBuf::from(value));
            }
            "corral.test.logStrategy" => {
                let (name, k) = value.split_once('/').unwrap_or((value, "4"));
                let s = corral_engine::log::FlushStrategy::from_name(name.trim())
                    .ok_or_else(|| invalid(key, value, loc, "not a log flush strategy"))?;
                let k =
                    k.trim().parse::<usize>().ok().filter(|k| (1..=64).contains(k)).ok_or_else(
                        || invalid(key, value, loc, "writes in flight must be 1 to 64"),
                    )?;
                self.test_log_strategy = Some((s, k));
            }
            "multiAddress.enabled" => self.multi_address_enabled = parse_bool(key, value, loc)?,
            "metricsProvider.className" => {
                let known = value.ends_with("PrometheusMetricsProvider")
                    || value == DEFAULT_METRICS_PROVIDER
                    || value == "org.apache.zookeeper.metrics.impl.NullMetricsProvider";
                if !known {
                    return Err(invalid(key, value, loc, "not a metrics provider Corral has"));
                }
                self.metrics_provider.class_name = value.to_string();
            }
            "metricsProvider.httpHost" => self.metrics_provider.http_host = value.to_string(),
            "metricsProvider.httpPort" => {
                self.metrics_provider.http_port = parse_port(key, value, loc)?
            }
            "metricsProvider.exportJvmInfo" => {
                self.metrics_provider.export_jvm_info = parse_bool(key, value, loc)?
            }
            "quorum.auth.enableSasl" => self.quorum_sasl.enable = parse_bool(key, value, loc)?,
            "quorum.auth.learnerRequireSasl" => {
                self.quorum_sasl.learner_required = parse_bool(key, value, loc)?
            }
            "quorum.auth.serverRequireSasl" => {
                self.quorum_sasl.server_required = parse_bool(key, value, loc)?
            }
            "quorum.auth.learner.saslLoginContext" => {
                self.quorum_sasl.learner_context = value.to_string()
            }
            "quorum.auth.server.saslLoginContext" => {
                self.quorum_sasl.server_context = value.to_string()
            }
            "quorum.auth.kerberos.servicePrincipal" => {
                self.quorum_sasl.service_principal = value.to_string()
            }
            // Parsed by ZooKeeper, ignored by Corral: still reject what ZooKeeper rejects.
            "sslQuorum" => self.ssl_quorum = parse_bool(key, value, loc)?,
            "portUnification" => self.port_unification = parse_bool(key, value, loc)?,
            "sslQuorumReloadCertFiles" => {
                self.ssl_quorum_reload_cert_files = parse_bool(key, value, loc)?
            }
            _ => {}
        }
        Ok(())
    }

    /// Keys ZooKeeper reads as system properties (from zoo.cfg or `-D`).
    fn apply_property_key(
        &mut self,
        key: &str,
        value: &str,
        loc: Location,
        whitelist_location: &mut Option<Location>,
    ) -> Result<(), ConfigError> {
        use Grammar::Decode;
        let property_name = match key_kind(key) {
            KeyKind::PlainProperty => key.to_string(),
            _ => format!("zookeeper.{key}"),
        };
        self.system_properties.insert(property_name, value.to_string());
        if let KeyKind::IgnoredProperty(reason) = key_kind(key) {
            self.warn(ConfigWarning::Ignored { key: key.to_string(), location: loc, reason });
            return Ok(());
        }
        match key {
            "4lw.commands.whitelist" => {
                self.four_letter_word_whitelist = Some(value.to_string());
                *whitelist_location = Some(loc);
            }
            "snapCount" => {
                let n =
                    parse_int(key, value, loc, Decode, i64::from(i32::MIN), i64::from(i32::MAX))?;
                if n < i64::from(MIN_SNAP_COUNT) {
                    self.warn(ConfigWarning::SnapCountRaised { value: n, location: loc });
                }
                self.snap_count = n.max(i64::from(MIN_SNAP_COUNT)) as u32;
            }
            "snapSizeLimitInKb" => {
                self.snap_size_limit_kb = parse_int(key, value, loc, Decode, i64::MIN, i64::MAX)?
            }
            "txnLogSizeLimitInKb" => {
                self.txn_log_size_limit_kb = parse_int(key, value, loc, Decode, i64::MIN, i64::MAX)?
            }
            "commitLogCount" => self.commit_log_count = parse_u32(key, value, loc, Decode, 0)?,
            "preAllocSize" => {
                // Long.parseLong(value) * 1024 in ZooKeeper.
                self.pre_alloc_size_kb =
                    parse_int(key, value, loc, Grammar::Decimal, 1, i64::MAX / 1024)? as u64
            }
            "globalOutstandingLimit" => {
                self.global_outstanding_limit = parse_u32(key, value, loc, Decode, 1)?
            }
            "maxCnxns" => self.max_cnxns = parse_u32(key, value, loc, Decode, 0)?,
            "cnxTimeout" => self.cnx_timeout_ms = parse_u32(key, value, loc, Decode, 1)?,
            "electionPortBindRetry" => {
                self.election_port_bind_retry = parse_u32(key, value, loc, Decode, 0)?
            }
            "fsync.warningthresholdms" => {
                self.fsync_warning_threshold_ms =
                    parse_int(key, value, loc, Decode, 0, i64::MAX)? as u64
            }
            "forceSync" => self.force_sync = parse_bool(key, value, loc)?,
            "skipACL" => self.skip_acl = parse_bool(key, value, loc)?,
            "leaderServes" => self.leader_serves = parse_bool(key, value, loc)?,
            "extendedTypesEnabled" => self.extended_types_enabled = parse_bool(key, value, loc)?,
            "digest.enabled" => self.digest_enabled = parse_bool(key, value, loc)?,
            "closeSessionTxn.enabled" => {
                self.close_session_txn_enabled = parse_bool(key, value, loc)?
            }
            "readonlymode.enabled" => self.read_only_mode_enabled = parse_bool(key, value, loc)?,
            "snapshot.compression.method" => {
                if !matches!(value, "" | "gz" | "snappy") {
                    return Err(invalid(key, value, loc, "expected gz, snappy or nothing"));
                }
                self.snapshot_compression_method = value.to_string();
            }
            "jute.maxbuffer" => {
                self.jute_max_buffer =
                    parse_int(key, value, loc, Decode, 1, i64::from(i32::MAX))? as u32
            }
            "jute.maxbuffer.extrasize" => {
                self.jute_max_buffer_extrasize =
                    Some(parse_int(key, value, loc, Decode, 0, i64::from(i32::MAX))? as u32)
            }
            "nio.sessionlessCnxnTimeout" => {
                self.sessionless_cnxn_timeout_ms =
                    Some(parse_int(key, value, loc, Decode, 1, i64::from(i32::MAX))? as u64)
            }
            "sessionRequireClientSASLAuth" => {
                self.session_require_client_sasl_auth = parse_bool(key, value, loc)?
            }
            "enforce.auth.enabled" => self.enforce_auth_enabled = parse_bool(key, value, loc)?,
            "enforce.auth.schemes" => {
                self.enforce_auth_schemes = value
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            }
            "DigestAuthenticationProvider.superDigest" => {
                if !value.contains(':') {
                    return Err(invalid(key, value, loc, "expected super:<base64 sha1 digest>"));
                }
                self.super_digest = Some(value.to_string());
            }
            "admin.enableServer" => self.admin_enable_server = parse_bool(key, value, loc)?,
            "admin.serverAddress" => self.admin_server_address = value.to_string(),
            "admin.serverPort" => self.admin_server_port = parse_port(key, value, loc)?,
            "audit.enable" => self.audit_enable = parse_bool(key, value, loc)?,
            "admin.snapshot.enabled" => self.admin_snapshot_enabled = parse_bool(key, value, loc)?,
            "admin.restore.enabled" => self.admin_restore_enabled = parse_bool(key, value, loc)?,
            "admin.rateLimiterIntervalInMS" => {
                self.admin_rate_limiter_interval_ms =
                    parse_int(key, value, loc, Decode, 0, i64::MAX)? as u64
            }
            "admin.commandURL" => {
                if !value.starts_with('/') {
                    return Err(invalid(key, value, loc, "a URL path starting with /"));
                }
                self.admin_command_url = value.to_string();
            }
            "admin.idleTimeout" => {
                self.admin_idle_timeout_ms =
                    parse_int(key, value, loc, Decode, 1, i64::from(i32::MAX))? as u64
            }
            k if k.starts_with("authProvider.") => {
                self.auth_providers
                    .insert(k["authProvider.".len()..].to_string(), value.to_string());
            }
            // Read from the system properties when the TLS listeners are set up
            // (crate::tls::ClientTls::from_config), where bad values are reported.
            k if k.starts_with("ssl.")
                || k == "client.portUnification"
                || k == "X509AuthenticationProvider.superUser" => {}
            // Read by crate::sasl::SaslConfig::from_config (and the Kerberos configuration's
            // path by the binary's main, as KRB5_CONFIG).
            "java.security.auth.login.config"
            | "java.security.krb5.conf"
            | "security.auth_to_local"
            | "allowSaslFailedClients"
            | "sasl.serverconfig"
            | "superUser"
            | "SASLAuthenticationProvider.superPassword"
            | "kerberos.removeHostFromPrincipal"
            | "kerberos.removeRealmFromPrincipal" => {}
            k if k.starts_with("superUser.") => {}
            // Read by crate::net::admin_http::AdminTls::from_config.
            "admin.portUnification" | "admin.forceHttps" | "admin.needClientAuth" => {}
            _ => unreachable!("every system property key has a case: {key}"),
        }
        Ok(())
    }

    /// What `QuorumPeerConfig.parseProperties` and `setupQuorumPeerConfig` do after the loop.
    fn finish(&mut self, mut pending: Pending, files: &dyn ConfigFiles) -> Result<(), ConfigError> {
        if let Some((value, location)) = pending.snap_retain_count {
            if value < i64::from(MIN_SNAP_RETAIN_COUNT) {
                self.warn(ConfigWarning::SnapRetainCountRaised { value, location });
            }
            self.autopurge_snap_retain_count = value.max(i64::from(MIN_SNAP_RETAIN_COUNT)) as u32;
        }

        let Some((data_dir, _)) = pending.data_dir.take() else {
            return Err(ConfigError::Missing { key: "dataDir", quorum: false });
        };
        self.data_log_dir = pending.data_log_dir.take().unwrap_or_else(|| data_dir.clone());
        self.data_dir = data_dir;

        if self.client_port.is_none() {
            if let Some(location) = pending.client_port_address_location {
                return Err(ConfigError::Inconsistent {
                    message: "clientPortAddress is set but clientPort is not".to_string(),
                    location,
                });
            }
        }
        if self.secure_client_port.is_none() {
            if let Some(location) = pending.secure_client_port_address_location {
                return Err(ConfigError::Inconsistent {
                    message: "secureClientPortAddress is set but secureClientPort is not"
                        .to_string(),
                    location,
                });
            }
        }
        self.client_address = self.client_port.map(|port| HostPort {
            host: self.client_port_address.clone().unwrap_or_else(|| WILDCARD_HOST.to_string()),
            port,
        });

        self.min_session_timeout_ms = match pending.min_session_timeout {
            Some((ms, _)) => ms,
            None => self.tick_time_ms.saturating_mul(2),
        };
        self.max_session_timeout_ms = match pending.max_session_timeout {
            Some((ms, _)) => ms,
            None => self.tick_time_ms.saturating_mul(20),
        };
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            let location = pending
                .min_session_timeout
                .or(pending.max_session_timeout)
                .map_or(Location::Default, |(_, l)| l);
            return Err(ConfigError::Inconsistent {
                message: format!(
                    "minSessionTimeout ({} ms) must not be larger than maxSessionTimeout ({} ms)",
                    self.min_session_timeout_ms, self.max_session_timeout_ms
                ),
                location,
            });
        }

        // Membership: inline, or from the dynamic config file.
        let membership = match (&self.dynamic_config_file, pending.dynamic_config_location) {
            (Some(path), Some(_)) => {
                let text = files
                    .read_dynamic_config(path)
                    .map_err(|source| ConfigError::Io { path: path.clone(), source })?;
                let mut entries = Vec::new();
                for p in parse_properties(&text)? {
                    let key = java_trim(&p.key).to_string();
                    let location = Location::DynamicLine(p.line);
                    if key == "version" {
                        return Err(ConfigError::Inconsistent {
                            message: "the dynamic config file must not contain version (it \
                                      comes from the file name)"
                                .to_string(),
                            location,
                        });
                    }
                    if !(key.starts_with("server.")
                        || key.starts_with("group")
                        || key.starts_with("weight"))
                    {
                        return Err(invalid(
                            &key,
                            java_trim(&p.value),
                            location,
                            "only server.N, group.N and weight.N belong in a dynamic config file",
                        ));
                    }
                    entries.push((key, java_trim(&p.value).to_string(), location));
                }
                self.config_version = version_from_file_name(path).unwrap_or(0);
                entries
            }
            _ => std::mem::take(&mut pending.membership),
        };
        for (key, value, location) in membership {
            self.apply_membership_key(&key, &value, location)?;
        }
        self.check_membership()?;

        // myid: read whenever the file exists, required in quorum mode.
        let myid_path = self.data_dir.join("myid");
        let myid_text = files
            .read_myid(&self.data_dir)
            .map_err(|source| ConfigError::Io { path: myid_path.clone(), source })?;
        if let Some(text) = myid_text {
            let trimmed = text.trim();
            match java_parse_long(trimmed).filter(|id| *id >= 0) {
                Some(id) => self.my_id = Some(id as u64),
                None if self.is_distributed() => {
                    return Err(ConfigError::InvalidMyId {
                        path: myid_path,
                        value: trimmed.to_string(),
                    })
                }
                None => self.warn(ConfigWarning::InvalidMyIdIgnored { value: trimmed.to_string() }),
            }
        }
        self.setup_client_address()?;
        self.setup_peer_type();

        if self.is_distributed() {
            if self.init_limit.is_none() {
                return Err(ConfigError::Missing { key: "initLimit", quorum: true });
            }
            if self.sync_limit.is_none() {
                return Err(ConfigError::Missing { key: "syncLimit", quorum: true });
            }
            let Some(my_id) = self.my_id else {
                return Err(ConfigError::MissingMyId { path: myid_path });
            };
            if !self.servers.contains_key(&my_id) {
                return Err(ConfigError::MyIdNotInServers { my_id });
            }
        }
        if self.connect_to_learner_master_limit.is_none() {
            self.connect_to_learner_master_limit = self.init_limit;
        }
        self.check_server_id()?;
        if let Some(spec) = self.four_letter_word_whitelist.clone() {
            let location = pending.whitelist_location.unwrap_or(Location::Default);
            self.check_whitelist_names(&spec, location);
        }
        Ok(())
    }

    fn apply_membership_key(
        &mut self,
        key: &str,
        value: &str,
        location: Location,
    ) -> Result<(), ConfigError> {
        let number = |suffix: &str| -> Result<u64, ConfigError> {
            match java_parse_long(suffix) {
                Some(n) if n >= 0 => Ok(n as u64),
                _ => Err(invalid(key, value, location, format!("{suffix:?} is not a server id"))),
            }
        };
        if let Some(id) = key.strip_prefix("server.") {
            let id = number(id)?;
            let server = QuorumServer::parse(id, value, location)?;
            if server.addresses.len() > 1 && !self.multi_address_enabled {
                return Err(invalid(
                    key,
                    value,
                    location,
                    "several addresses need multiAddress.enabled=true",
                ));
            }
            if id > 255 {
                self.warn(ConfigWarning::ServerIdAbove255 { id });
            }
            self.servers.insert(id, server);
        } else if let Some(id) = key.strip_prefix("group.") {
            let id = number(id)?;
            let members = value
                .split(':')
                .map(|m| match java_parse_long(m) {
                    Some(n) if n >= 0 => Ok(n as u64),
                    _ => Err(invalid(key, value, location, format!("{m:?} is not a server id"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.groups.insert(id, members);
        } else if let Some(id) = key.strip_prefix("weight.") {
            let id = number(id)?;
            let weight = parse_int(key, value, location, Grammar::Decimal, 0, i64::MAX)?;
            self.weights.insert(id, weight as u64);
        } else if key == "version" {
            self.config_version = u64::from_str_radix(value, 16)
                .map_err(|_| invalid(key, value, location, "not a hexadecimal version"))?;
        } else {
            return Err(invalid(key, value, location, "expected group.N or weight.N"));
        }
        Ok(())
    }

    /// ZooKeeper's `parseDynamicConfig` checks on the set of servers.
    fn check_membership(&mut self) -> Result<(), ConfigError> {
        let participants = self.participants().count();
        let observers = self.servers.len() - participants;
        let location = self.servers.values().next().map_or(Location::Default, |s| s.location);
        let inconsistent =
            |message: &str| ConfigError::Inconsistent { message: message.to_string(), location };
        if participants == 0 {
            if !self.standalone_enabled {
                return Err(inconsistent("standaloneEnabled=false needs at least one participant"));
            }
            if observers > 0 {
                return Err(inconsistent("observers without participants"));
            }
        } else if participants == 1 && self.standalone_enabled {
            if observers > 0 {
                return Err(inconsistent("observers without a quorum"));
            }
            self.warn(ConfigWarning::SingleServerIgnored);
        } else if participants <= 2 {
            self.warn(ConfigWarning::NoFailureTolerated { participants });
        } else if participants.is_multiple_of(2) {
            self.warn(ConfigWarning::EvenParticipants { participants });
        }
        Ok(())
    }

    /// ZooKeeper's `setupClientPort`: this server's line may carry its client address.
    fn setup_client_address(&mut self) -> Result<(), ConfigError> {
        let Some(server) = self.my_id.and_then(|id| self.servers.get(&id)) else {
            return Ok(());
        };
        let Some(line_client) = server.client_address.clone() else {
            return Ok(());
        };
        if let Some(static_client) = &self.client_address {
            let conflict = if static_client.is_wildcard() {
                static_client.port != line_client.port
            } else {
                *static_client != line_client
            };
            if conflict {
                return Err(ConfigError::Inconsistent {
                    message: format!(
                        "client address {} of clientPort/clientPortAddress differs from {} in \
                         server.{}",
                        static_client.delimited(),
                        line_client.delimited(),
                        server.id
                    ),
                    location: server.location,
                });
            }
        }
        self.client_address = Some(line_client);
        Ok(())
    }

    /// ZooKeeper's `setupPeerType`: the server line's role wins over `peerType`.
    fn setup_peer_type(&mut self) {
        if self.servers.is_empty() {
            return;
        }
        let from_list = match self.my_id.and_then(|id| self.servers.get(&id)) {
            Some(s) => s.learner_type,
            None => LearnerType::Participant,
        };
        if from_list != self.peer_type {
            self.warn(ConfigWarning::PeerTypeMismatch {
                peer_type: self.peer_type,
                server_line: from_list,
            });
            self.peer_type = from_list;
        }
    }

    /// `EphemeralType.validateServerId`: TTL owners use the top byte 0xFF, so with extended
    /// types a server id must stay at or below 254.
    fn check_server_id(&self) -> Result<(), ConfigError> {
        match self.my_id {
            Some(id) if self.extended_types_enabled && id > MAX_SERVER_ID_EXTENDED_TYPES => {
                Err(ConfigError::Inconsistent {
                    message: format!(
                        "server id {id} is above {MAX_SERVER_ID_EXTENDED_TYPES}, the limit with \
                         extendedTypesEnabled=true"
                    ),
                    location: Location::MyIdFile,
                })
            }
            _ => Ok(()),
        }
    }

    fn check_whitelist_names(&mut self, spec: &str, location: Location) {
        for name in spec.split(',').map(java_trim) {
            if !name.is_empty() && name != "*" && FourLetterWord::from_name(name).is_none() {
                self.warn(ConfigWarning::UnknownFourLetterWord {
                    name: name.to_string(),
                    location,
                });
            }
        }
    }

    /// Applies a Java system property given as `-Dname=value` (as kazoo's test harness passes
    /// them): `zookeeper.K` sets key `K` when ZooKeeper reads `K` as a system property
    /// (`zookeeper.snapCount`, `zookeeper.4lw.commands.whitelist`,
    /// `zookeeper.DigestAuthenticationProvider.superDigest`, `zookeeper.extendedTypesEnabled`,
    /// …); `jute.maxbuffer` and `readonlymode.enabled` are taken bare. A property ZooKeeper
    /// would not read is reported as a warning (returned, added to [`Config::warnings`] and
    /// logged) and otherwise ignored; an invalid value is an error and changes nothing.
    pub fn apply_system_property(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<Option<ConfigWarning>, ConfigError> {
        let value = java_trim(value);
        let key = match name {
            "jute.maxbuffer"
            | "readonlymode.enabled"
            | "java.security.auth.login.config"
            | "java.security.krb5.conf" => name,
            _ => name.strip_prefix("zookeeper.").unwrap_or(""),
        };
        let warning = match key_kind(key) {
            KeyKind::SystemProperty | KeyKind::PlainProperty | KeyKind::IgnoredProperty(_) => {
                let mut updated = self.clone();
                let before = updated.warnings.len();
                let mut whitelist_location = None;
                updated.apply_property_key(
                    key,
                    value,
                    Location::SystemProperty,
                    &mut whitelist_location,
                )?;
                updated.check_server_id()?;
                if let Some(spec) = updated.four_letter_word_whitelist.clone() {
                    if whitelist_location.is_some() {
                        updated.check_whitelist_names(&spec, Location::SystemProperty);
                    }
                }
                let new_warning = updated.warnings.get(before).cloned();
                *self = updated;
                new_warning
            }
            KeyKind::File | KeyKind::Membership | KeyKind::IgnoredFile(_) if !key.is_empty() => {
                Some(ConfigWarning::NotASystemProperty { name: name.to_string() })
            }
            _ => Some(ConfigWarning::UnknownSystemProperty { name: name.to_string() }),
        };
        if let Some(w) = &warning {
            tracing::warn!("{w}");
            if !self.warnings.contains(w) {
                self.warnings.push(w.clone());
            }
        }
        Ok(warning)
    }

    /// Why this configuration must not run, if it asks for security Corral cannot give: an
    /// `authProvider.N` other than ZooKeeper's built-in digest, ip, SASL and x509 providers,
    /// an `ssl.authProvider` other than x509, or enforced authentication with no scheme or a
    /// scheme no provider serves (ZooKeeper refuses the last two as well). Ignoring any of
    /// these with a warning could let in clients the operator meant to keep out, so the
    /// server refuses to start instead.
    pub fn security_refusal(&self) -> Option<String> {
        const BUILT_IN: [&str; 4] = [
            "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
            "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
            "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
        ];
        if let Some(schemes) = self.enforced_auth_schemes() {
            if schemes.is_empty() {
                return Some("enforce.auth.enabled=true needs enforce.auth.schemes".into());
            }
            for scheme in &schemes {
                let known = match scheme.as_str() {
                    "digest" | "ip" => true,
                    "sasl" => self.sasl_enabled(),
                    "x509" => self.x509_enabled(),
                    _ => false,
                };
                if !known {
                    return Some(format!(
                        "enforce.auth.schemes names {scheme}, for which no authentication provider is registered"
                    ));
                }
            }
        }
        if let Some(scheme) = self.system_properties.get("zookeeper.ssl.authProvider") {
            if scheme.trim() != "x509" {
                return Some(format!(
                    "ssl.authProvider={} is not supported by Corral (only x509)",
                    scheme.trim()
                ));
            }
        }
        for (n, class) in &self.auth_providers {
            if !BUILT_IN.contains(&class.as_str()) {
                return Some(format!(
                    "authProvider.{n}={class} is not supported by Corral (only ZooKeeper's built-in digest, ip, SASL and x509 providers)"
                ));
            }
        }
        None
    }

    /// Whether `secureClientPort` or `client.portUnification` serves TLS clients.
    pub fn client_tls_enabled(&self) -> bool {
        self.secure_client_port.is_some()
            || self
                .system_properties
                .get("zookeeper.client.portUnification")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// Whether the `x509` scheme is known: ZooKeeper registers its provider whenever clients
    /// may come over TLS, or when an `authProvider.N` names it.
    pub fn x509_enabled(&self) -> bool {
        self.client_tls_enabled()
            || self
                .auth_providers
                .values()
                .any(|c| c == "org.apache.zookeeper.server.auth.X509AuthenticationProvider")
    }

    /// The schemes a client must hold an id of before any request but auth and SASL, if
    /// authentication is enforced (`sessionRequireClientSASLAuth` wins: sasl alone).
    pub fn enforced_auth_schemes(&self) -> Option<Vec<String>> {
        if self.session_require_client_sasl_auth {
            Some(vec!["sasl".to_string()])
        } else if self.enforce_auth_enabled {
            Some(self.enforce_auth_schemes.clone())
        } else {
            None
        }
    }

    /// Whether the `sasl` scheme is known (an `authProvider.N` names ZooKeeper's SASL
    /// provider).
    pub fn sasl_enabled(&self) -> bool {
        self.auth_providers
            .values()
            .any(|c| c == "org.apache.zookeeper.server.auth.SASLAuthenticationProvider")
    }

    /// Quorum mode (ZooKeeper's `isDistributed`): server lines with more than one participant,
    /// or any server lines with `standaloneEnabled=false`.
    pub fn is_distributed(&self) -> bool {
        !self.servers.is_empty() && (!self.standalone_enabled || self.participants().count() > 1)
    }

    /// The participants among the server lines.
    pub fn participants(&self) -> impl Iterator<Item = &QuorumServer> + '_ {
        self.servers.values().filter(|s| s.learner_type == LearnerType::Participant)
    }

    /// The observers among the server lines.
    pub fn observers(&self) -> impl Iterator<Item = &QuorumServer> + '_ {
        self.servers.values().filter(|s| s.learner_type == LearnerType::Observer)
    }

    /// This server's line (quorum mode).
    pub fn my_server(&self) -> Option<&QuorumServer> {
        self.my_id.and_then(|id| self.servers.get(&id))
    }

    /// The server id sessions are made with: `myid` in quorum mode, 1 when standalone
    /// (ZooKeeper's `createSessionTrackerServerId`).
    pub fn session_server_id(&self) -> u64 {
        match self.my_id {
            Some(id) if self.is_distributed() => id,
            _ => crate::session::ids::STANDALONE_SERVER_ID,
        }
    }

    /// Where snapshots live: `<dataDir>/version-2`.
    pub fn snap_dir(&self) -> PathBuf {
        self.data_dir.join("version-2")
    }

    /// Where transaction logs live: `<dataLogDir>/version-2`.
    pub fn log_dir(&self) -> PathBuf {
        self.data_log_dir.join("version-2")
    }

    /// Clamps a requested session timeout into `[minSessionTimeout, maxSessionTimeout]`.
    pub fn negotiate_session_timeout(&self, requested_ms: i32) -> u32 {
        let requested = u32::try_from(requested_ms).unwrap_or(0);
        requested.clamp(self.min_session_timeout_ms, self.max_session_timeout_ms)
    }

    /// The four-letter words this server answers (`isro` added in read-only mode).
    pub fn four_letter_whitelist(&self) -> Whitelist {
        Whitelist::parse(self.four_letter_word_whitelist.as_deref(), self.read_only_mode_enabled)
    }

    /// The membership as ZooKeeper writes it (`QuorumVerifier.toString`): one
    /// `server.N=<value>` line per server by id, then `version=<hex>` without a newline. This
    /// is the data of `/zookeeper/config` and the end of `conf` in quorum mode.
    pub fn quorum_verifier_text(&self) -> String {
        let m =
            crate::zab::Membership { servers: self.servers.clone(), version: self.config_version };
        m.text()
    }
}

/// Writes an activated membership to disk as ZooKeeper 3.5+ does (QuorumPeer's
/// setQuorumVerifier): the dynamic file `<static>.dynamic.<hex version>` (its `server.N`
/// lines sorted, no version line), then the static file `static` rewritten without its
/// membership (`server.*`, `group*`, `weight*`, `peerType`, an older `dynamicConfigFile`, and
/// the client port keys if this server's line carries its client address) and pointing at
/// the dynamic file. The first rewrite keeps the original as `<static>.bak`. Both files are
/// replaced atomically. Returns the dynamic file's path.
pub fn write_dynamic_config(
    static_path: &Path,
    my_id: u64,
    text: &[u8],
    version: u64,
) -> std::io::Result<PathBuf> {
    let text = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("version"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    let dynamic = PathBuf::from(format!("{}.dynamic.{version:x}", static_path.display()));
    write_atomically(&dynamic, lines.join("\n").as_bytes())?;
    let dynamic = dynamic.canonicalize()?;
    let original = std::fs::read_to_string(static_path)?;
    // This server's line carries a client address: clientPort/clientPortAddress go.
    let mine = format!("server.{my_id}=");
    let erase_client = lines.iter().any(|l| l.starts_with(&mine) && l.contains(';'));
    let mut out = String::new();
    for line in original.lines() {
        let key = line.trim().split(['=', ':']).next().unwrap_or("").trim();
        let drop = key.starts_with("server.")
            || key.starts_with("group")
            || key.starts_with("weight")
            || key.starts_with("dynamicConfigFile")
            || key.starts_with("peerType")
            || (erase_client && key.starts_with("clientPort"));
        if !drop {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("dynamicConfigFile={}\n", dynamic.display()));
    let backup = PathBuf::from(format!("{}.bak", static_path.display()));
    if !backup.exists() {
        std::fs::write(&backup, &original)?;
    }
    write_atomically(static_path, out.as_bytes())?;
    Ok(dynamic)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// ZooKeeper's `getVersionFromFilename`: `zoo.cfg.dynamic.100000000` → 0x100000000.
fn version_from_file_name(path: &Path) -> Option<u64> {
    let name = path.to_str()?;
    let suffix = &name[name.rfind('.')? + 1..];
    u64::from_str_radix(suffix, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_number_grammars() {
        assert_eq!(java_parse_long("42"), Some(42));
        assert_eq!(java_parse_long("+42"), Some(42));
        assert_eq!(java_parse_long("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(java_parse_long("9223372036854775808"), None);
        assert_eq!(java_parse_long("0x10"), None);
        assert_eq!(java_parse_long(""), None);
        assert_eq!(java_parse_long("-"), None);
        assert_eq!(java_parse_long(" 1"), None);
        assert_eq!(java_decode_long("0x10"), Some(16));
        assert_eq!(java_decode_long("0X10"), Some(16));
        assert_eq!(java_decode_long("#ff"), Some(255));
        assert_eq!(java_decode_long("-0x10"), Some(-16));
        assert_eq!(java_decode_long("010"), Some(8));
        assert_eq!(java_decode_long("0"), Some(0));
        assert_eq!(java_decode_long("0x-1"), None);
        assert_eq!(java_decode_long("09"), None);
    }

    #[test]
    fn command_line_keys_work_with_or_without_their_prefix() {
        assert_eq!(property_name("admin.serverPort"), "zookeeper.admin.serverPort");
        assert_eq!(property_name("zookeeper.admin.serverPort"), "zookeeper.admin.serverPort");
        assert_eq!(property_name("jute.maxbuffer"), "jute.maxbuffer");
        assert_eq!(property_name("no.such.key"), "no.such.key");
        assert_eq!(property_name("clientPort"), "clientPort");
        let mut c = Config::parse_str("dataDir=/tmp/x\nclientPort=2181\n").unwrap();
        c.apply_system_property(&property_name("admin.serverPort"), "9181").unwrap();
        assert_eq!(c.admin_server_port, 9181);
        // Java's -D without the prefix is not read by ZooKeeper, nor by Corral's parser.
        let mut c = Config::parse_str("dataDir=/tmp/x\nclientPort=2181\n").unwrap();
        c.apply_system_property("admin.serverPort", "9181").unwrap();
        assert_eq!(c.admin_server_port, DEFAULT_ADMIN_SERVER_PORT);
    }

    #[test]
    fn java_trim_strips_control_characters() {
        assert_eq!(java_trim("\u{1} a b\t\u{c}"), "a b");
    }

    #[test]
    fn host_and_port_like_config_utils() {
        assert_eq!(host_and_port("a:1:2").unwrap(), ["a", "1", "2"]);
        assert_eq!(host_and_port("[::1]:1:2").unwrap(), ["::1", "1", "2"]);
        assert_eq!(host_and_port("[::1]").unwrap(), ["::1"]);
        assert!(host_and_port("[::1:1:2").is_err());
        assert!(host_and_port("[::1]:").is_err());
        assert!(host_and_port("[::1]x1").is_err());
    }

    #[test]
    fn dynamic_file_versions() {
        assert_eq!(version_from_file_name(Path::new("zoo.cfg.dynamic.100000000")), Some(1 << 32));
        assert_eq!(version_from_file_name(Path::new("/a/zoo.cfg.dynamic")), None);
    }
}
