//! Administration: ZooKeeper's four-letter words and the data they report.
//!
//! Owns: recognising a four-letter word in the first four bytes of a connection
//! ([`fourlw::FourLetterWord`]), the `4lw.commands.whitelist` rules ([`fourlw::Whitelist`]),
//! and the text of every answer, byte for byte as Apache ZooKeeper 3.8.0 writes it
//! ([`report`], [`monitor`]), rendered from plain data structs the server fills in. The version
//! string the server reports ([`full_version`]).
//!
//! Must never touch: sockets, clocks, files or the server's live state. The network layer reads
//! the word, asks [`fourlw::execute`] for the answer (giving it a [`fourlw::FourLetterSource`]
//! that snapshots the server's state into the structs), writes the bytes and closes. Nothing
//! here blocks or allocates beyond the answer itself.
//!
//! Fidelity: `server/tests/fourlw_samples.rs` renders every word from the values in
//! `shared/zk-3.8.0-4lw-samples.txt` (live output of ZooKeeper 3.8.0) and compares bytes; the
//! Java number, date and address formats are checked against the JDK in [`javafmt`].

pub mod commands;
pub mod fourlw;
pub mod javafmt;
pub mod json;
pub mod monitor;
pub mod prometheus;
pub mod report;
pub mod server_metrics;
pub mod warnings;

/// The ZooKeeper release whose behaviour Corral reproduces.
pub const ZOOKEEPER_VERSION: &str = "3.8.0";

/// This build of Corral.
pub const CORRAL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Build date reported after "built on": `CORRAL_BUILD_DATE` at compile time, or `unknown`.
pub const BUILD_DATE: &str = match option_env!("CORRAL_BUILD_DATE") {
    Some(date) => date,
    None => "unknown",
};

/// The full version string of `srvr`, `stat`, `envi` (`zookeeper.version=`) and `mntr`
/// (`zk_version`): `3.8.0-corral-<crate version>, built on <date>`.
///
/// It keeps ZooKeeper's shape (`<release>-<revision>, built on <date>`; ZooKeeper's revision is
/// the git commit) with the ZooKeeper release Corral is compatible with in front, so tools that
/// parse the release number see 3.8.0: kazoo's `server_version()` applies `([\d\.]*)` to the
/// `zookeeper.version=` line of `envi`, and feature checks compare that against (3, 5, 0) etc.
/// The revision part says which Corral it is.
pub fn full_version() -> String {
    format!("{ZOOKEEPER_VERSION}-corral-{CORRAL_VERSION}, built on {BUILD_DATE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_prefix_parses_as_zookeepers() {
        let v = full_version();
        // kazoo: re.match(r"([\d\.]*)", version)
        let prefix: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        assert_eq!(prefix, "3.8.0");
        assert!(v.starts_with("3.8.0-corral-"));
        assert!(v.contains(", built on "));
    }
}
