//! A serving certificate read from PEM files and read again when they change: cert-manager and
//! the kubelet replace a mounted Secret's files in place, and a server must present the new
//! certificate without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate: {reason}")]
    NoCertificate { path: PathBuf, reason: String },
    #[error("{path} holds no PEM private key: {reason}")]
    NoKey { path: PathBuf, reason: String },
    #[error("the key in {path} does not fit the certificate or is not supported: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// When each file last changed (and its size): a new value means it was replaced.
type Stamp = [Option<(SystemTime, u64)>; 2];

/// The certificate and key at two paths, as last read. Each handshake looks at the files'
/// modification times (a `stat` each, cheap next to a handshake) and reads them again when they
/// changed; a read that fails keeps the previous certificate (a rotation may be half written)
/// and is tried again at the next handshake.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    /// Reads the files once; an error here stops the operator at start.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = stamp(cert_path, key_path);
        let key = read(cert_path, key_path, &provider)?;
        Ok(ReloadingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: Mutex::new((stamp, key)),
        })
    }

    /// The certificate to present now, read again if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.cert_path, &self.key_path);
        let mut current = self.current.lock().expect("not poisoned");
        if current.0 != now {
            match read(&self.cert_path, &self.key_path, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert_path.display(), "webhook certificate reloaded");
                    *current = (now, key);
                }
                Err(error) => {
                    tracing::warn!(%error, "webhook certificate not reloaded; serving the previous one");
                }
            }
        }
        current.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    // `metadata` follows symlinks: a Secret volume swaps its `..data` link, and the target's
    // time and size are the new files'.
    let of = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    [of(cert), of(key)]
}

fn read(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_pem = read_file(cert_path)?;
    let key_pem = read_file(key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NoCertificate {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertError::NoKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let key_error = |source| CertError::Key {
        path: key_path.to_owned(),
        source,
    };
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(key_error)?;
    Ok(Arc::new(certified))
}

fn read_file(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A rustls server configuration presenting `cert` (HTTP/1.1 only: the API server's webhook
/// client and Prometheus speak it, and the servers are axum's http1).
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = cert.provider.clone();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    #[test]
    fn a_replaced_certificate_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = write_pair(dir.path(), "first");
        let reloading = ReloadingCert::load(&cert, &key).unwrap();
        assert_eq!(reloading.current().cert[0].as_ref(), first.as_slice());

        let second = write_pair(dir.path(), "second.example");
        assert_eq!(reloading.current().cert[0].as_ref(), second.as_slice());

        std::fs::write(&cert, "not a certificate, and a different size").unwrap();
        assert_eq!(
            reloading.current().cert[0].as_ref(),
            second.as_slice(),
            "a broken file keeps the previous certificate"
        );
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            ReloadingCert::load(&dir.path().join("nope.crt"), &dir.path().join("k")).unwrap_err();
        assert!(error.to_string().contains("nope.crt"), "{error}");
    }
}
