//! The secured metrics' serving certificate: PEM files given by flags (read again when they
//! change, see [`crate::https::ReloadingCert`]), or, without them, a self-signed certificate
//! made in memory at start (as controller-runtime does), which a scraper accepts with
//! `insecure_skip_verify`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::https::{CertError, ReloadingCert};

/// Where the certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// A certificate for `localhost` and `127.0.0.1`, new at every start.
    SelfSigned,
    /// A PEM certificate chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
}

impl CertSource {
    /// From the optional certificate and key flags: both or neither.
    pub fn from_flags(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Self, TlsError> {
        let given = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        match (given(cert), given(key)) {
            (None, None) => Ok(CertSource::SelfSigned),
            (Some(cert), Some(key)) => Ok(CertSource::Files { cert, key }),
            _ => Err(TlsError::HalfPair),
        }
    }
}

/// Why the TLS configuration could not be made; each stops the operator at start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("--metrics-cert-file and --metrics-key-file go together: give both or neither")]
    HalfPair,
    #[error("generating the self-signed metrics certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the metrics certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The rustls server configuration presenting the certificate of `source`, HTTP/1.1 only
/// (Prometheus scrapes over it, and the server is axum's http1).
pub fn server_config(source: &CertSource) -> Result<rustls::ServerConfig, TlsError> {
    if let CertSource::Files { cert, key } = source {
        let reloading = Arc::new(ReloadingCert::load(cert, key)?);
        return Ok(crate::https::server_config(reloading)?);
    }
    let (chain, key) = self_signed()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn self_signed() -> Result<Pair, TlsError> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names)?;
    let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    Ok((vec![generated.cert.der().clone()], key.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_give_both_files_or_neither() {
        let path = |p: &str| Some(PathBuf::from(p));
        assert_eq!(
            CertSource::from_flags(None, path("")).unwrap(),
            CertSource::SelfSigned,
            "an empty value (an unset chart value) is no file"
        );
        assert_eq!(
            CertSource::from_flags(path("c"), path("k")).unwrap(),
            CertSource::Files {
                cert: "c".into(),
                key: "k".into()
            }
        );
        assert!(matches!(
            CertSource::from_flags(path("c"), None),
            Err(TlsError::HalfPair)
        ));
    }

    #[test]
    fn a_self_signed_configuration_is_made() {
        let config = server_config(&CertSource::SelfSigned).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }

    #[test]
    fn files_are_read_and_their_errors_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["m".to_owned()]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let files = CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        server_config(&files).unwrap();

        std::fs::write(&key, "not a key").unwrap();
        let error = server_config(&files).unwrap_err().to_string();
        assert!(
            error.contains("tls.key") && error.contains("private key"),
            "{error}"
        );

        let missing = CertSource::Files {
            cert: dir.path().join("absent.crt"),
            key,
        };
        let error = server_config(&missing).unwrap_err().to_string();
        assert!(error.contains("absent.crt"), "{error}");
    }
}
