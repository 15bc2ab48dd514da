//! TLS between servers (`sslQuorum`, `portUnification`, `ssl.quorum.*`), as ZooKeeper 3.8
//! runs it on its election and quorum ports.
//!
//! The quorum transports ([`super::quorum`]) work on plain blocking sockets, a reader and a
//! writer thread each. A TLS connection is therefore carried by a relay: the handshake and
//! the encrypted stream run on a small tokio runtime of their own, and the transport gets the
//! other end of a loopback TCP pair, whose bytes the relay moves to and from the TLS stream.
//! Everything above the socket — framing, limits, timeouts, shutdowns — is unchanged.
//!
//! * Dialling: TLS when `sslQuorum=true`; the peer's certificate is checked against
//!   `ssl.quorum.trustStore.*`, and its address against the certificate when
//!   `ssl.quorum.hostnameVerification` (default true); this server presents its own.
//! * Accepting: with `portUnification=true` both kinds, told apart by the first byte (0x16 is
//!   a TLS handshake; ZooKeeper reads 5 bytes with `ssl.quorum.handshakeDetectionTimeoutMillis`);
//!   else with `sslQuorum=true` TLS only ("insecure connection attempt" refused); the peer
//!   must present a certificate the trust store vouches for, naming its address when hostname
//!   verification is on.
//! * `sslQuorumReloadCertFiles=true`: a new connection first checks the store files'
//!   modification time and length, and when they changed the configurations are built again
//!   from them (ZooKeeper watches the files and does the same for later connections).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::tls::settings::TlsSettings;

/// TLS for the quorum ports.
pub struct QuorumTls {
    configs: Mutex<Configs>,
    /// With `sslQuorumReloadCertFiles`: the settings to build the configs again from.
    reload: Option<TlsSettings>,
    /// Dial with TLS (sslQuorum).
    pub dial_tls: bool,
    /// Accept plaintext too (portUnification, or sslQuorum off).
    pub accept_plain: bool,
    hostname_verification: bool,
    detect_timeout: Duration,
    rt: tokio::runtime::Runtime,
    pair: Mutex<TcpListener>,
}

/// The TLS configurations in use, and the state of the store files they were built from.
struct Configs {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    stamp: Vec<Option<(std::time::SystemTime, u64)>>,
}

/// The modification time and length of each store file of `settings`.
fn stamp(settings: &TlsSettings) -> Vec<Option<(std::time::SystemTime, u64)>> {
    [&settings.key_store, &settings.trust_store]
        .into_iter()
        .map(|s| {
            let m = std::fs::metadata(&s.as_ref()?.location).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

impl std::fmt::Debug for QuorumTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumTls")
            .field("dial_tls", &self.dial_tls)
            .field("accept_plain", &self.accept_plain)
            .field("hostname_verification", &self.hostname_verification)
            .finish()
    }
}

impl QuorumTls {
    /// The quorum's TLS from `sslQuorum`, `portUnification` and `ssl.quorum.*`; `None` when
    /// neither key is on.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Option<Arc<QuorumTls>>> {
        let (ssl, unified) = (config.ssl_quorum, config.port_unification);
        if !ssl && !unified {
            return Ok(None);
        }
        let settings = TlsSettings::quorum(&config.system_properties)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("corral-quorum-tls")
            .enable_all()
            .build()?;
        let pair = TcpListener::bind("127.0.0.1:0")?;
        let configs = Configs {
            acceptor: tokio_rustls::TlsAcceptor::from(settings.server_config()?),
            connector: tokio_rustls::TlsConnector::from(settings.client_config()?),
            stamp: stamp(&settings),
        };
        Ok(Some(Arc::new(QuorumTls {
            configs: Mutex::new(configs),
            reload: config.ssl_quorum_reload_cert_files.then(|| settings.clone()),
            dial_tls: ssl,
            accept_plain: unified || !ssl,
            hostname_verification: settings.hostname_verification,
            detect_timeout: Duration::from_millis(settings.handshake_detection_timeout_ms),
            rt,
            pair: Mutex::new(pair),
        })))
    }

    /// The configurations for a new connection: with `sslQuorumReloadCertFiles`, built again
    /// first if a store file changed since (a file that cannot be read or used keeps the
    /// previous ones, with a warning; connections already up are not touched).
    fn current(&self) -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
        let mut c = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(settings) = &self.reload {
            let now = stamp(settings);
            if now != c.stamp {
                c.stamp = now;
                match (settings.server_config(), settings.client_config()) {
                    (Ok(server), Ok(client)) => {
                        c.acceptor = tokio_rustls::TlsAcceptor::from(server);
                        c.connector = tokio_rustls::TlsConnector::from(client);
                        tracing::info!("quorum TLS: key or trust store changed; new connections use it (sslQuorumReloadCertFiles)");
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::warn!(error = %e, "quorum TLS: a changed store cannot be used; keeping the previous one");
                    }
                }
            }
        }
        (c.acceptor.clone(), c.connector.clone())
    }

    /// A loopback TCP pair: (the transport's end, the relay's end).
    fn pair(&self) -> io::Result<(TcpStream, TcpStream)> {
        let l = self.pair.lock().unwrap_or_else(|p| p.into_inner());
        let a = TcpStream::connect(l.local_addr()?)?;
        let local = a.local_addr()?;
        loop {
            let (b, from) = l.accept()?;
            if from == local {
                a.set_nodelay(true)?;
                b.set_nodelay(true)?;
                return Ok((a, b));
            }
        }
    }

    /// An outgoing connection to `peer`, through TLS when sslQuorum is on.
    pub fn dial(&self, s: TcpStream, peer: SocketAddr, within: Duration) -> io::Result<TcpStream> {
        if !self.dial_tls {
            return Ok(s);
        }
        let (mine, relay) = self.pair()?;
        let connector = self.current().1;
        let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
        let tls = self.rt.block_on(async move {
            s.set_nonblocking(true)?;
            let tcp = tokio::net::TcpStream::from_std(s)?;
            match tokio::time::timeout(within, connector.connect(name, tcp)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time")),
            }
        });
        let tls = tls.map_err(|e| refused(format!("TLS to {peer}: {e}")))?;
        self.relay(tokio_rustls::TlsStream::Client(tls), relay)?;
        Ok(mine)
    }

    /// An accepted connection from `remote`: plaintext as it is (if allowed), TLS through the
    /// relay, or refused.
    pub fn accept(
        &self,
        s: TcpStream,
        remote: SocketAddr,
        within: Duration,
    ) -> io::Result<TcpStream> {
        let tls = if self.accept_plain {
            let mut first = [0u8; 1];
            s.set_read_timeout(Some(self.detect_timeout))?;
            let seen = s.peek(&mut first);
            s.set_read_timeout(None)?;
            match seen {
                Ok(1) => first[0] == crate::tls::HANDSHAKE_RECORD,
                Ok(_) => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed at once"))
                }
                // ZooKeeper takes a silent connection as plaintext.
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    false
                }
                Err(e) => return Err(e),
            }
        } else {
            true
        };
        if !tls {
            return Ok(s);
        }
        let (mine, relay) = self.pair()?;
        let acceptor = self.current().0;
        let stream = self.rt.block_on(async move {
            s.set_nonblocking(true)?;
            let tcp = tokio::net::TcpStream::from_std(s)?;
            match tokio::time::timeout(within, acceptor.accept(tcp)).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time")),
            }
        });
        let stream = stream.map_err(|e| refused(format!("TLS from {remote}: {e}")))?;
        if self.hostname_verification {
            let named = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .is_some_and(|leaf| crate::tls::verify::names_address(leaf, remote.ip()));
            if !named {
                return Err(refused(format!(
                    "TLS from {remote}: its certificate does not name {} (ssl.quorum.hostnameVerification)",
                    remote.ip()
                )));
            }
        }
        self.relay(tokio_rustls::TlsStream::Server(stream), relay)?;
        Ok(mine)
    }

    /// Moves bytes both ways between `tls` and the relay's end of the pair until either side
    /// ends.
    fn relay(
        &self,
        tls: tokio_rustls::TlsStream<tokio::net::TcpStream>,
        plain: TcpStream,
    ) -> io::Result<()> {
        plain.set_nonblocking(true)?;
        let _guard = self.rt.enter();
        let plain = tokio::net::TcpStream::from_std(plain)?;
        self.rt.spawn(async move {
            let (mut tls, mut plain) = (tls, plain);
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
        Ok(())
    }
}

/// A peer refused (logged as a warning by the transports' refusal log).
fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn quorum_tls(dir: &std::path::Path, trust: &str, reload: bool) -> Arc<QuorumTls> {
        let text = format!(
            "dataDir={}\nclientPort=2181\nsslQuorum=true\nsslQuorumReloadCertFiles={reload}\n\
             ssl.quorum.keyStore.location={}\nssl.quorum.keyStore.password=apassword\n\
             ssl.quorum.trustStore.location={trust}\nssl.quorum.hostnameVerification=false\n",
            dir.display(),
            testdata("keystore.jks")
        );
        let config = crate::config::Config::parse_str(&text).unwrap();
        QuorumTls::from_config(&config).unwrap().expect("quorum TLS on")
    }

    /// One connection from `dialer` to `server`: whether the server took it.
    fn connect(dialer: &Arc<QuorumTls>, server: &Arc<QuorumTls>) -> bool {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let d = dialer.clone();
        let t = std::thread::spawn(move || {
            let s = TcpStream::connect(addr).unwrap();
            let _ = d.dial(s, addr, Duration::from_secs(5));
        });
        let (s, remote) = listener.accept().unwrap();
        let accepted = server.accept(s, remote, Duration::from_secs(5)).is_ok();
        t.join().unwrap();
        accepted
    }

    // sslQuorumReloadCertFiles: a trust store that changes is read again for the next
    // connection (here it stops trusting the CA the peers' certificates come from); without
    // the key the file is read once.
    #[test]
    fn a_changed_trust_store_is_read_again_only_with_reload() {
        for reload in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let trust = dir.path().join("trust.pem");
            std::fs::copy(testdata("ca.pem"), &trust).unwrap();
            let trust = trust.display().to_string();
            let dialer = quorum_tls(dir.path(), &testdata("ca.pem"), false);
            let server = quorum_tls(dir.path(), &trust, reload);
            assert!(connect(&dialer, &server), "the CA is trusted");
            std::fs::copy(testdata("rogue-cert.pem"), &trust).unwrap();
            assert_eq!(connect(&dialer, &server), !reload, "reload={reload}");
            // And back: trusted again (with reload, read once more).
            std::fs::copy(testdata("ca.pem"), &trust).unwrap();
            assert!(connect(&dialer, &server), "reload={reload}");
        }
    }
}
