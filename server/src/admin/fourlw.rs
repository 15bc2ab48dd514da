//! Four-letter words: recognising them, the whitelist, and answering them.
//!
//! Owns: the list of words ZooKeeper 3.8.0 knows, their detection from the first four bytes of a
//! fresh connection (before any ConnectRequest, the would-be frame length read as ASCII), the
//! `4lw.commands.whitelist` rules, and [`execute`], which turns a word plus the server's state
//! (through [`FourLetterSource`]) into the exact bytes ZooKeeper would write before closing.
//!
//! Must never touch: sockets (the caller reads the word, and for `stmk` the 8-byte mask that
//! follows it, and writes the answer), clocks, files.
//!
//! ZooKeeper's flow, reproduced by [`execute`]: a known word that is not whitelisted is answered
//! `<word> is not executed because it is not in the whitelist.\n`; otherwise most words answer
//! [`ZK_NOT_SERVING`] while the server is not serving (ruok, envi, gtmk and stmk always
//! answer; isro says `null`); the telnet close sequence gets no answer. An unknown word is
//! not a four-letter word at all: the four bytes are a packet length.

use std::collections::BTreeSet;
use std::fmt;

use super::monitor::{render_mntr, MonitorStats};
use super::report::{
    render_conf, render_cons, render_dirs, render_dump, render_envi, render_hash, render_stat,
    render_watches_by_path, render_watches_by_session, render_wchs, ConfData, ConnectionInfo,
    DirSizes, DumpData, Environment, ServerStats, WatchSummary,
};

/// What most words answer while the server is not serving (ZooKeeper's `ZK_NOT_SERVING`).
pub const ZK_NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

/// ZooKeeper's default trace mask (`ZooTrace.textTraceLevel`), what `gtmk` answers until an
/// `stmk` changes it.
pub const DEFAULT_TRACE_MASK: i64 = 306;

/// A four-letter word ZooKeeper 3.8.0 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FourLetterWord {
    /// `ruok`: `imok`.
    Ruok,
    /// `isro`: `rw` or `ro`.
    Isro,
    /// `srvr`: server statistics.
    Srvr,
    /// `stat`: server statistics and connections (brief).
    Stat,
    /// `cons`: connections in full.
    Cons,
    /// `crst`: reset connection statistics.
    Crst,
    /// `srst`: reset server statistics.
    Srst,
    /// `conf`: the configuration in use.
    Conf,
    /// `envi`: the environment.
    Envi,
    /// `dirs`: sizes of the data and log directories.
    Dirs,
    /// `dump`: sessions and ephemeral nodes.
    Dump,
    /// `wchs`: watch summary.
    Wchs,
    /// `wchc`: watches by session.
    Wchc,
    /// `wchp`: watches by path.
    Wchp,
    /// `mntr`: monitoring key/values.
    Mntr,
    /// `gtmk`: get the trace mask.
    Gtmk,
    /// `stmk`: set the trace mask (an 8-byte big-endian mask follows the word).
    Stmk,
    /// `hash`: the tree digest history.
    Hash,
    /// The bytes telnet sends when it closes (`0xfff4fffd`); recognised so it is not taken
    /// for a packet length, and answered with nothing.
    TelnetClose,
}

impl FourLetterWord {
    /// Every word, in ZooKeeper's registration order.
    pub const ALL: [FourLetterWord; 19] = [
        FourLetterWord::Conf,
        FourLetterWord::Cons,
        FourLetterWord::Crst,
        FourLetterWord::Dirs,
        FourLetterWord::Dump,
        FourLetterWord::Envi,
        FourLetterWord::Gtmk,
        FourLetterWord::Ruok,
        FourLetterWord::Stmk,
        FourLetterWord::Srst,
        FourLetterWord::Srvr,
        FourLetterWord::Stat,
        FourLetterWord::Wchc,
        FourLetterWord::Wchp,
        FourLetterWord::Wchs,
        FourLetterWord::Mntr,
        FourLetterWord::Isro,
        FourLetterWord::Hash,
        FourLetterWord::TelnetClose,
    ];

    /// The four bytes that start a connection sending this word.
    pub const fn bytes(self) -> [u8; 4] {
        match self {
            FourLetterWord::Ruok => *b"ruok",
            FourLetterWord::Isro => *b"isro",
            FourLetterWord::Srvr => *b"srvr",
            FourLetterWord::Stat => *b"stat",
            FourLetterWord::Cons => *b"cons",
            FourLetterWord::Crst => *b"crst",
            FourLetterWord::Srst => *b"srst",
            FourLetterWord::Conf => *b"conf",
            FourLetterWord::Envi => *b"envi",
            FourLetterWord::Dirs => *b"dirs",
            FourLetterWord::Dump => *b"dump",
            FourLetterWord::Wchs => *b"wchs",
            FourLetterWord::Wchc => *b"wchc",
            FourLetterWord::Wchp => *b"wchp",
            FourLetterWord::Mntr => *b"mntr",
            FourLetterWord::Gtmk => *b"gtmk",
            FourLetterWord::Stmk => *b"stmk",
            FourLetterWord::Hash => *b"hash",
            FourLetterWord::TelnetClose => [0xff, 0xf4, 0xff, 0xfd],
        }
    }

    /// The name ZooKeeper uses in the whitelist and in its answers (`telnet close` for the
    /// telnet sequence).
    pub fn name(self) -> &'static str {
        match self {
            FourLetterWord::Ruok => "ruok",
            FourLetterWord::Isro => "isro",
            FourLetterWord::Srvr => "srvr",
            FourLetterWord::Stat => "stat",
            FourLetterWord::Cons => "cons",
            FourLetterWord::Crst => "crst",
            FourLetterWord::Srst => "srst",
            FourLetterWord::Conf => "conf",
            FourLetterWord::Envi => "envi",
            FourLetterWord::Dirs => "dirs",
            FourLetterWord::Dump => "dump",
            FourLetterWord::Wchs => "wchs",
            FourLetterWord::Wchc => "wchc",
            FourLetterWord::Wchp => "wchp",
            FourLetterWord::Mntr => "mntr",
            FourLetterWord::Gtmk => "gtmk",
            FourLetterWord::Stmk => "stmk",
            FourLetterWord::Hash => "hash",
            FourLetterWord::TelnetClose => "telnet close",
        }
    }

    /// The word whose bytes start a fresh connection, or `None`: then the bytes are the length
    /// of a ConnectRequest frame.
    pub fn detect(first_four: [u8; 4]) -> Option<FourLetterWord> {
        FourLetterWord::ALL.into_iter().find(|w| w.bytes() == first_four)
    }

    /// [`detect`](Self::detect) on the big-endian frame length the bytes were read as.
    pub fn from_length(length: i32) -> Option<FourLetterWord> {
        FourLetterWord::detect(length.to_be_bytes())
    }

    /// The word of a whitelist entry (`ruok`, …, `telnet close`), case-sensitive as in
    /// ZooKeeper.
    pub fn from_name(name: &str) -> Option<FourLetterWord> {
        FourLetterWord::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Whether an 8-byte argument follows the word (`stmk`'s new trace mask). Read it only
    /// when the word is whitelisted, as ZooKeeper does.
    pub fn takes_argument(self) -> bool {
        self == FourLetterWord::Stmk
    }
}

impl fmt::Display for FourLetterWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The words a server answers (`4lw.commands.whitelist`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whitelist {
    words: BTreeSet<FourLetterWord>,
}

impl Whitelist {
    /// ZooKeeper's rules: `spec` is a comma list of names (each trimmed, unknown names ignored)
    /// or contains `*` for every word; `None` (not configured) enables nothing beyond the
    /// always-on words. `srvr` is always enabled (zkServer.sh needs it), and `isro` is when
    /// read-only mode is enabled.
    pub fn parse(spec: Option<&str>, read_only_mode_enabled: bool) -> Whitelist {
        let mut words = BTreeSet::new();
        for name in spec.unwrap_or("").split(',').map(str::trim) {
            if name == "*" {
                words.extend(FourLetterWord::ALL);
                break;
            }
            if let Some(word) = FourLetterWord::from_name(name) {
                words.insert(word);
            }
        }
        if read_only_mode_enabled {
            words.insert(FourLetterWord::Isro);
        }
        words.insert(FourLetterWord::Srvr);
        Whitelist { words }
    }

    /// Every word (`4lw.commands.whitelist=*`).
    pub fn all() -> Whitelist {
        Whitelist { words: FourLetterWord::ALL.into_iter().collect() }
    }

    /// Whether `word` is answered.
    pub fn allows(&self, word: FourLetterWord) -> bool {
        self.words.contains(&word)
    }

    /// The enabled words.
    pub fn words(&self) -> impl Iterator<Item = FourLetterWord> + '_ {
        self.words.iter().copied()
    }
}

impl Default for Whitelist {
    /// ZooKeeper's default: `srvr` only.
    fn default() -> Whitelist {
        Whitelist::parse(None, false)
    }
}

/// The answer to a known word that is not whitelisted.
pub fn not_whitelisted_answer(word: FourLetterWord) -> Vec<u8> {
    format!("{} is not executed because it is not in the whitelist.\n", word.name()).into_bytes()
}

/// The server state four-letter words report, gathered on demand.
///
/// The network layer implements it over the live server; each method returns a snapshot as a
/// plain struct, and only the methods the word needs are called. The `&mut self` methods are
/// the words' side effects.
pub trait FourLetterSource {
    /// Whether the server is serving requests (ZooKeeper's `zkServer.isRunning()`).
    fn is_serving(&self) -> bool;
    /// Whether it serves in read-only mode (`isro` answers `ro`).
    fn is_read_only(&self) -> bool;
    /// For `srvr` and `stat`.
    fn server_stats(&self) -> ServerStats;
    /// For `stat` and `cons`: every client connection.
    fn connections(&self) -> Vec<ConnectionInfo>;
    /// For `conf`.
    fn conf(&self) -> ConfData;
    /// For `envi`.
    fn environment(&self) -> Environment;
    /// For `dirs`.
    fn dir_sizes(&self) -> DirSizes;
    /// For `dump`.
    fn dump(&self) -> DumpData;
    /// For `wchs`.
    fn watch_summary(&self) -> WatchSummary;
    /// For `wchc`: (session id, watched paths) per watcher.
    fn watches_by_session(&self) -> Vec<(i64, Vec<String>)>;
    /// For `wchp`: (path, watching session ids) per path.
    fn watches_by_path(&self) -> Vec<(String, Vec<i64>)>;
    /// For `mntr`.
    fn monitor(&self) -> MonitorStats;
    /// For `hash`: (zxid, digest) history.
    fn digest_log(&self) -> Vec<(i64, i64)>;
    /// For `gtmk`.
    fn trace_mask(&self) -> i64;
    /// `stmk`.
    fn set_trace_mask(&mut self, mask: i64);
    /// `crst`.
    fn reset_connection_stats(&mut self);
    /// `srst`.
    fn reset_server_stats(&mut self);
}

/// The bytes ZooKeeper 3.8.0 writes for `word` before closing the connection.
///
/// `stmk_mask` is the 8-byte argument of `stmk` (read by the caller, big-endian, only if the
/// word is whitelisted); without it `stmk` answers nothing, as ZooKeeper closes on a short read.
pub fn execute(
    word: FourLetterWord,
    whitelist: &Whitelist,
    source: &mut dyn FourLetterSource,
    stmk_mask: Option<i64>,
) -> Vec<u8> {
    use FourLetterWord::*;
    if !whitelist.allows(word) {
        return not_whitelisted_answer(word);
    }
    let not_serving = || format!("{ZK_NOT_SERVING}\n").into_bytes();
    let text = match word {
        Ruok => "imok".to_string(),
        Gtmk => source.trace_mask().to_string(),
        Stmk => match stmk_mask {
            Some(mask) => {
                source.set_trace_mask(mask);
                mask.to_string()
            }
            None => String::new(),
        },
        Envi => render_envi(&source.environment()),
        TelnetClose => String::new(),
        Isro if !source.is_serving() => "null".to_string(),
        Isro if source.is_read_only() => "ro".to_string(),
        Isro => "rw".to_string(),
        // `hash` prints the message without a newline.
        Hash if !source.is_serving() => ZK_NOT_SERVING.to_string(),
        _ if !source.is_serving() => return not_serving(),
        Srvr => render_stat(&source.server_stats(), None),
        Stat => render_stat(&source.server_stats(), Some(&source.connections())),
        Cons => render_cons(&source.connections()),
        Crst => {
            source.reset_connection_stats();
            "Connection stats reset.\n".to_string()
        }
        Srst => {
            source.reset_server_stats();
            "Server stats reset.\n".to_string()
        }
        Conf => render_conf(&source.conf()),
        Dirs => render_dirs(&source.dir_sizes()),
        Dump => render_dump(&source.dump()),
        Wchs => render_wchs(&source.watch_summary()),
        Wchc => render_watches_by_session(&source.watches_by_session()),
        Wchp => render_watches_by_path(&source.watches_by_path()),
        Mntr => render_mntr(&source.monitor()),
        Hash => render_hash(&source.digest_log()),
    };
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_covers_every_word_and_nothing_else() {
        for word in FourLetterWord::ALL {
            assert_eq!(FourLetterWord::detect(word.bytes()), Some(word));
            assert_eq!(FourLetterWord::from_length(i32::from_be_bytes(word.bytes())), Some(word));
            assert_eq!(FourLetterWord::from_name(word.name()), Some(word));
        }
        assert_eq!(FourLetterWord::detect(*b"xyzw"), None);
        assert_eq!(FourLetterWord::detect(*b"RUOK"), None);
        assert_eq!(FourLetterWord::detect(*b"icfg"), None, "3.9 only");
        // A real ConnectRequest frame length (45 bytes) is not a word.
        assert_eq!(FourLetterWord::from_length(45), None);
        assert_eq!(
            FourLetterWord::from_length(0xfff4fffd_u32 as i32),
            Some(FourLetterWord::TelnetClose)
        );
    }

    #[test]
    fn whitelist_rules() {
        let default = Whitelist::default();
        assert_eq!(default.words().collect::<Vec<_>>(), [FourLetterWord::Srvr]);
        let ro = Whitelist::parse(None, true);
        assert!(ro.allows(FourLetterWord::Isro) && ro.allows(FourLetterWord::Srvr));

        let list = Whitelist::parse(Some(" ruok , stat,,bogus,MNTR "), false);
        assert!(list.allows(FourLetterWord::Ruok));
        assert!(list.allows(FourLetterWord::Stat));
        assert!(list.allows(FourLetterWord::Srvr), "srvr is always on");
        assert!(!list.allows(FourLetterWord::Mntr), "names are case-sensitive");
        assert!(!list.allows(FourLetterWord::Isro));

        let star = Whitelist::parse(Some("ruok, *"), false);
        assert_eq!(star, Whitelist::all());
        assert!(star.allows(FourLetterWord::TelnetClose));
        let telnet = Whitelist::parse(Some("telnet close"), false);
        assert!(telnet.allows(FourLetterWord::TelnetClose));
    }

    #[test]
    fn not_whitelisted_text() {
        assert_eq!(
            not_whitelisted_answer(FourLetterWord::Dump),
            b"dump is not executed because it is not in the whitelist.\n"
        );
        assert_eq!(
            not_whitelisted_answer(FourLetterWord::TelnetClose),
            b"telnet close is not executed because it is not in the whitelist.\n"
        );
    }
}
