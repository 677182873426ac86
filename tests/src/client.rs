//! Kubeconfigs, kube clients, readiness probes and per-test namespaces.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::{Error, Result};

/// How the kubeconfig's user authenticates.
pub(crate) enum Credentials<'a> {
    /// Client certificate + key, PEM.
    ClientCert { cert_pem: &'a str, key_pem: &'a str },
    /// Bearer token (e.g. a ServiceAccount token).
    Token(&'a str),
}

/// The admin's kubeconfig for `server`, with the PKI's admin client certificate.
pub(crate) fn admin_kubeconfig(server: &str, pki: &crate::pki::Pki) -> Result<String> {
    render_kubeconfig(
        server,
        &pki.ca_pem,
        crate::pki::ADMIN_USER,
        Credentials::ClientCert {
            cert_pem: &pki.admin_cert_pem,
            key_pem: &pki.admin_key_pem,
        },
    )
}

/// Renders a single-context kubeconfig with everything embedded (no file references), so the
/// file can be copied around or used after the PKI directory is gone.
pub(crate) fn render_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    creds: Credentials<'_>,
) -> Result<String> {
    let user_entry = match creds {
        Credentials::ClientCert { cert_pem, key_pem } => serde_json::json!({
            "client-certificate-data": BASE64.encode(cert_pem),
            "client-key-data": BASE64.encode(key_pem),
        }),
        Credentials::Token(token) => serde_json::json!({ "token": token }),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "mcall",
            "cluster": {
                "server": server,
                "certificate-authority-data": BASE64.encode(ca_pem),
            },
        }],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{
            "name": "mcall",
            "context": { "cluster": "mcall", "user": user, "namespace": "default" },
        }],
        "current-context": "mcall",
    });
    serde_yaml::to_string(&doc).map_err(|e| Error::RenderKubeconfig {
        what: "control plane",
        reason: e.to_string(),
    })
}

/// Builds a client from kubeconfig YAML. `what` names the identity for error messages.
pub(crate) async fn client_from_yaml(yaml: &str, what: &str) -> Result<Client> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|source| Error::LoadKubeconfig {
        what: what.to_string(),
        source,
    })?;
    client_from_kubeconfig(kubeconfig, what).await
}

pub(crate) async fn client_from_kubeconfig(kubeconfig: Kubeconfig, what: &str) -> Result<Client> {
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::LoadKubeconfig {
            what: what.to_string(),
            source,
        })?;
    // Everything is on loopback: a connect slower than this is a hang, not a slow network.
    // The read timeout stays kube's default (none) so watches and long calls keep working.
    config.connect_timeout = Some(Duration::from_secs(5));
    Client::try_from(config).map_err(|source| Error::BuildClient {
        what: what.to_string(),
        source,
    })
}

/// One readiness check. Ready means: `/readyz` says ok (this includes the RBAC bootstrap
/// post-start hook), the `default` and `kube-system` namespaces exist (created by the
/// apiserver's bootstrap controller, which `/readyz` does not wait for; leader-election leases
/// and the like live in kube-system), and the bootstrap RBAC objects that
/// non-admin users rely on exist. The admin is in `system:masters`, which bypasses RBAC, so
/// the admin being served says nothing about the latter.
pub(crate) async fn probe_ready(client: &Client) -> std::result::Result<(), String> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| format!("building the /readyz request: {e}"))?;
    let body = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET /readyz: {e}"))?;
    if body.trim() != "ok" {
        return Err(format!("GET /readyz answered {body:?}"));
    }
    for ns in ["default", "kube-system"] {
        Api::<Namespace>::all(client.clone())
            .get(ns)
            .await
            .map_err(|e| format!("GET namespace {ns}: {e}"))?;
    }
    for role in ["admin", "edit", "view"] {
        Api::<ClusterRole>::all(client.clone())
            .get(role)
            .await
            .map_err(|e| format!("GET clusterrole {role}: {e}"))?;
    }
    Api::<ClusterRoleBinding>::all(client.clone())
        .get("system:discovery")
        .await
        .map_err(|e| format!("GET clusterrolebinding system:discovery: {e}"))?;
    Ok(())
}

/// One health check of a component other than the apiserver (kube-controller-manager), whose
/// `/healthz` answers from the moment it listens: ready means it passes and lists every check
/// in `required` (a controller's check is added once the controller is built, which is after
/// the component reached the apiserver). `client` points at the component, not the apiserver.
pub(crate) async fn probe_healthz(
    client: &Client,
    required: &[&str],
) -> std::result::Result<(), String> {
    let request = http::Request::get("/healthz?verbose")
        .body(Vec::new())
        .map_err(|e| format!("building the /healthz request: {e}"))?;
    let body = client
        .request_text(request)
        .await
        .map_err(|e| format!("GET /healthz: {e}"))?;
    if !body.lines().any(|l| l.trim() == "healthz check passed") {
        return Err(format!("GET /healthz?verbose answered {body:?}"));
    }
    match required
        .iter()
        .find(|check| !body.lines().any(|l| l.trim() == format!("[+]{check} ok")))
    {
        Some(missing) => Err(format!("GET /healthz?verbose does not list {missing} yet")),
        None => Ok(()),
    }
}

/// Ensures the ServiceAccount exists and returns a token for it from the TokenRequest API.
pub(crate) async fn service_account_token(
    admin: &Client,
    namespace: &str,
    name: &str,
) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(source) => {
            return Err(Error::Kube {
                op: format!("creating ServiceAccount {namespace}/{name}"),
                source,
            });
        }
    }
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            // No audiences: the token is for the apiserver's own audience (the issuer).
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let issued: TokenRequest = api
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .map_err(|source| Error::Kube {
            op: format!("requesting a token for ServiceAccount {namespace}/{name}"),
            source,
        })?;
    issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Kube {
            op: format!("requesting a token for ServiceAccount {namespace}/{name}"),
            source: kube::Error::Api(
                kube::core::Status::failure("the TokenRequest response has no token", "NoToken")
                    .boxed(),
            ),
        })
}

/// Creates a namespace named `<prefix>-<random>` and returns its name, so tests sharing one
/// control plane never collide. `prefix` is sanitised into a DNS label.
pub async fn create_test_namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("mcall.dev/test".to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|source| Error::Kube {
            op: format!("creating test namespace {name}"),
            source,
        })?;
    Ok(name)
}

/// `<sanitised prefix>-<8 hex chars>`, at most 63 characters.
pub(crate) fn unique_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    clean.truncate(50);
    let clean = clean.trim_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    format!("{clean}-{:08x}", random_u32())
}

/// Randomness without a dependency: std's `RandomState` is seeded from the OS; the counter
/// keeps two calls within one process distinct even if the seeds were equal.
fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels() {
        let a = unique_name("My_Test::RBAC");
        let b = unique_name("My_Test::RBAC");
        assert_ne!(a, b);
        assert!(a.starts_with("my-test--rbac-"), "{a}");
        assert!(unique_name("---").starts_with("test-"));
        let long = unique_name(&"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn kubeconfig_round_trips_through_kube() {
        let yaml = render_kubeconfig(
            "https://127.0.0.1:1",
            "CA",
            "someone",
            Credentials::Token("tok"),
        )
        .unwrap();
        let kc = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("mcall"));
        assert_eq!(
            kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://127.0.0.1:1")
        );
    }
}
