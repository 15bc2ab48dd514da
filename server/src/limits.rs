//! The size and count limits a client's input is checked against, in one place.
//!
//! Every limit here is checked *before* the work it bounds: a frame's length before its body is
//! read, a txn's encoded size before it is applied or logged, a reply's size before it is
//! queued, a connection's queued bytes before more of its requests are read. What a limit
//! refuses gets an error reply or a clean disconnect; nothing a client sends can reach a
//! storage error. docs/operations.md lists each limit with its zoo.cfg key and default.
//!
//! The sizes are one coherent set:
//!
//! * a request frame is at most `jute.maxbuffer` bytes (ZooKeeper's limit, checked by the
//!   connection before it reads the body);
//! * a txn — header, record and digest, as logged and as sent to peers — is at most
//!   `jute.maxbuffer + jute.maxbuffer.extrasize` bytes, which is what Apache ZooKeeper's
//!   followers and its log reader accept; the transaction log is opened with exactly this
//!   record limit, so a txn the pipeline accepts is one the log accepts;
//! * recovery reads back any record the log holds (a field can be no longer than the record
//!   that holds it), so a restart never refuses what was acknowledged, even after
//!   `jute.maxbuffer` is lowered;
//! * a reply frame is at most `jute.maxbuffer` bytes, the largest packet ZooKeeper's clients
//!   read (a larger one makes the Java client drop the connection and retry forever).

use crate::config::Config;

/// Default of the bytes that may wait in one connection's outbound queue before the server
/// stops reading that connection's requests.
pub const CLIENT_QUEUE_BYTES_DEFAULT: usize = 4 << 20;

/// Default of how long a connection's outbound queue may stay over its limit (the client not
/// reading) before the connection is closed.
pub const CLIENT_QUEUE_STALL_MS_DEFAULT: u64 = 30_000;

/// Default of how long a new connection has to complete its handshake (ZooKeeper's
/// `zookeeper.nio.sessionlessCnxnTimeout`).
pub const HANDSHAKE_MS_DEFAULT: u64 = 10_000;

/// Default of the authenticated ids one connection may hold (its `ip` id included).
pub const AUTH_IDS_MAX_DEFAULT: usize = 16;

/// Default of the bytes of one auth packet's credentials.
pub const AUTH_BYTES_MAX_DEFAULT: usize = 1024;

/// The limits, as a running server applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame (`jute.maxbuffer`).
    pub request_bytes_max: usize,
    /// Largest txn entry as logged: `jute.maxbuffer + jute.maxbuffer.extrasize`.
    pub txn_bytes_max: usize,
    /// Largest reply frame a client is sent (`jute.maxbuffer`).
    pub reply_bytes_max: usize,
    /// Bytes queued to one connection at which its requests stop being read. A connection
    /// whose queue grows past twice this (its client reads nothing while watch events keep
    /// coming) is closed at once.
    pub client_queue_bytes_max: usize,
    /// How long a connection's queue may stay over `client_queue_bytes_max` before the
    /// connection is closed (its session lives on, as after any disconnect).
    pub client_queue_stall_ms: u64,
    /// Time a new connection has to send a complete ConnectRequest (or a four-letter word).
    pub handshake_ms: u64,
    /// Connections in total (`maxCnxns`; 0: unlimited).
    pub cnxns_max: usize,
    /// Connections from one client address (`maxClientCnxns`; 0: unlimited).
    pub cnxns_per_address_max: usize,
    /// Authenticated ids per connection.
    pub auth_ids_max: usize,
    /// Bytes of one auth packet's credentials.
    pub auth_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&Config::default_standalone())
    }
}

impl Limits {
    /// The limits a configuration sets.
    pub fn from_config(c: &Config) -> Limits {
        let max_buffer = c.jute_max_buffer as usize;
        let extra = c.jute_max_buffer_extrasize.map_or(max_buffer, |e| e as usize);
        Limits {
            request_bytes_max: max_buffer,
            txn_bytes_max: max_buffer.saturating_add(extra),
            reply_bytes_max: max_buffer,
            // Room for a few of the largest replies, so a client that reads does not stall.
            client_queue_bytes_max: CLIENT_QUEUE_BYTES_DEFAULT.max(2 * max_buffer),
            client_queue_stall_ms: CLIENT_QUEUE_STALL_MS_DEFAULT,
            handshake_ms: c.sessionless_cnxn_timeout_ms.unwrap_or(HANDSHAKE_MS_DEFAULT),
            cnxns_max: c.max_cnxns as usize,
            cnxns_per_address_max: c.max_client_cnxns as usize,
            auth_ids_max: AUTH_IDS_MAX_DEFAULT,
            auth_bytes_max: AUTH_BYTES_MAX_DEFAULT,
        }
    }

    /// The bytes at which a connection is closed at once: twice the queue limit.
    pub fn client_queue_bytes_hard(&self) -> usize {
        self.client_queue_bytes_max.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_limit_is_maxbuffer_plus_extrasize() {
        let mut c = Config::default_standalone();
        c.jute_max_buffer = 1000;
        assert_eq!(Limits::from_config(&c).txn_bytes_max, 2000);
        c.jute_max_buffer_extrasize = Some(24);
        let l = Limits::from_config(&c);
        assert_eq!((l.request_bytes_max, l.txn_bytes_max, l.reply_bytes_max), (1000, 1024, 1000));
    }
}
