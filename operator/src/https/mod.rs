//! HTTPS for the servers every replica runs (the admission webhook, the secured metrics): a
//! listener that hands axum connections whose TLS handshake is done ([`listener`]), and a
//! certificate read from PEM files and read again when they change ([`reloading`]).

pub mod listener;
pub mod reloading;

pub use listener::TlsListener;
pub use reloading::{CertError, ReloadingCert, server_config};
