//! TLS as ZooKeeper 3.8 configures it: key and trust stores ([`store`]).

pub mod der;
pub mod settings;
pub mod store;
pub mod verify;

/// The cryptography: rustls over *ring* (post-quantum key exchange, which only rustls' other
/// provider has, is not offered; ZooKeeper 3.8 offers none either).
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
