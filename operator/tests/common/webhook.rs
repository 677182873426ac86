//! The admission webhook in a test: a throwaway CA issuing serving certificates for 127.0.0.1,
//! the server on a loopback port in the test's runtime, its registration scoped to one
//! namespace, and `kubectl apply` as a user runs it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcall::webhook::{ReloadingCert, Settings, TASK_PATH, WORKFLOW_PATH};
use mcall_tests::ControlPlane;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::root;

/// How long a registration may take to be in force.
const T: Duration = Duration::from_secs(60);

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
        Server::start_with(dir, Settings::default(), None).await
    }

    /// With the operator's flags and a client to read other tasks (as the binary has).
    pub async fn start_with(
        dir: &Path,
        settings: Settings,
        client: Option<kube::Client>,
    ) -> Server {
        let cert = ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(mcall::webhook::serve(
            listener,
            Arc::new(cert),
            settings,
            client,
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

/// Registers (or re-registers) the webhook at `port` for `kinds` (`mcalltask`, `mcallworkflow`)
/// of `namespace` only (other tests share the API server), failing closed.
pub fn register(plane: &ControlPlane, namespace: &str, port: u16, ca_pem: &str, kinds: &[&str]) {
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let webhook = |kind: &str, path: &str| {
        json!({
            "name": format!("{kind}s.mcall.tz.io"),
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "rules": [{
                "apiGroups": ["mcall.tz.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": [format!("{kind}s")],
                "scope": "Namespaced"
            }],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle}
        })
    };
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": format!("mcall-test-{namespace}")},
        "webhooks": kinds
            .iter()
            .map(|&kind| webhook(kind, if kind == "mcalltask" { TASK_PATH } else { WORKFLOW_PATH }))
            .collect::<Vec<_>>()
    });
    let out = apply(plane, None, &config.to_string(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

pub fn unregister(plane: &ControlPlane, namespace: &str) {
    let name = format!("validatingwebhookconfiguration/mcall-test-{namespace}");
    let out = plane.kubectl().args(["delete", &name]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

pub fn apply(
    plane: &ControlPlane,
    namespace: Option<&str>,
    manifest: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = plane.kubectl();
    cmd.current_dir(root())
        .args(["apply", "-f", "-"])
        .args(extra);
    if let Some(namespace) = namespace {
        cmd.args(["-n", namespace]);
    }
    mcall_tests::run_with_stdin(cmd, manifest.as_bytes()).expect("kubectl runs")
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn task_yaml(name: &str, spec: serde_json::Value) -> String {
    json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallTask", "metadata": {"name": name}, "spec": spec})
        .to_string()
}

/// A McallWorkflow with `spec` as a whole.
pub fn workflow_spec_yaml(name: &str, spec: serde_json::Value) -> String {
    json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow", "metadata": {"name": name}, "spec": spec})
        .to_string()
}

pub fn workflow_yaml(name: &str, tasks: serde_json::Value) -> String {
    json!({"apiVersion": "mcall.tz.io/v1", "kind": "McallWorkflow", "metadata": {"name": name}, "spec": {"tasks": tasks}})
        .to_string()
}

pub const DENIED: &str = "denied the request";

/// Waits until the API server sends `namespace`'s McallTasks to the webhook and it answers
/// (registrations take effect asynchronously): a server-side dry run of an invalid task is
/// refused by the webhook itself.
pub fn await_in_force(plane: &ControlPlane, namespace: &str) {
    let probe = task_yaml(
        "probe",
        json!({"type": "cmd", "input": "true", "expect": "regex:("}),
    );
    await_denied(plane, namespace, &probe);
}

pub fn assert_refused(
    plane: &ControlPlane,
    namespace: &str,
    what: &str,
    manifest: &str,
    field: &str,
) {
    let out = apply(plane, Some(namespace), manifest, &[]);
    let text = stderr(&out);
    assert!(!out.status.success(), "{what} was admitted");
    assert!(
        text.contains(DENIED),
        "{what}: not refused by the webhook: {text}"
    );
    assert!(
        text.contains(field),
        "{what}: {text:?} does not name {field:?}"
    );
}

pub fn assert_admitted(plane: &ControlPlane, namespace: &str, what: &str, manifest: &str) {
    let out = apply(plane, Some(namespace), manifest, &[]);
    assert!(out.status.success(), "{what} refused: {}", stderr(&out));
}

/// A server with a certificate of `ca`, registered for `namespace` and answering.
pub async fn serving(dir: &Path, ca: &Ca, plane: &ControlPlane, namespace: &str) -> Server {
    ca.issue_into(dir);
    let server = Server::start(dir).await;
    in_force(server, ca, plane, namespace)
}

/// [`serving`] with the operator's flags and a client.
pub async fn serving_with(
    dir: &Path,
    ca: &Ca,
    plane: &ControlPlane,
    namespace: &str,
    settings: Settings,
    client: kube::Client,
) -> Server {
    ca.issue_into(dir);
    let server = Server::start_with(dir, settings, Some(client)).await;
    in_force(server, ca, plane, namespace)
}

fn in_force(server: Server, ca: &Ca, plane: &ControlPlane, namespace: &str) -> Server {
    register(
        plane,
        namespace,
        server.port,
        &ca.pem(),
        &["mcalltask", "mcallworkflow"],
    );
    await_in_force(plane, namespace);
    server
}

/// Waits until a server-side dry run of `manifest` is refused by the webhook.
pub fn await_denied(plane: &ControlPlane, namespace: &str, manifest: &str) {
    let deadline = Instant::now() + T;
    loop {
        let out = apply(plane, Some(namespace), manifest, &["--dry-run=server"]);
        let text = stderr(&out);
        if !out.status.success() && text.contains(DENIED) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never refused by the webhook: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
