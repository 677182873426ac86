//! The admission webhook in a test: a throwaway CA issuing serving certificates for 127.0.0.1,
//! and the server on a loopback port in the test's runtime.

use std::path::Path;
use std::sync::Arc;

use mcall::webhook::{ReloadingCert, Settings};
use tokio_util::sync::CancellationToken;

/// A CA and the serving certificates it signs, for 127.0.0.1.
pub struct Ca(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Ca(rcgen::CertifiedIssuer::self_signed(params, key).unwrap())
    }

    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// Writes a new serving certificate and key to `dir`; returns the certificate's DER.
    pub fn issue_into(&self, dir: &Path) -> Vec<u8> {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        // Key first: the server reads both when either changed, and a certificate without its
        // key is refused (the previous pair stays) until the key is there too.
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        cert.der().to_vec()
    }
}

/// The webhook server, in this test's runtime.
pub struct Server {
    pub port: u16,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(dir: &Path) -> Server {
        let cert = ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(mcall::webhook::serve(
            listener,
            Arc::new(cert),
            Settings::default(),
            shutdown.clone(),
        ));
        Server {
            port,
            shutdown,
            handle,
        }
    }

    /// Stops serving; the port is closed when this returns.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// The certificate the server presents now, as a client trusting `ca` sees it.
    pub async fn presented(&self, ca: &Ca) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.0.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("a verified handshake");
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }
}
