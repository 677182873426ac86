//! A throwaway PKI for one control plane: CA, apiserver and controller-manager serving certs,
//! admin and controller-manager client certs, and the service-account signing key. All keys are ECDSA P-256 in PKCS#8 PEM, which both Go
//! (kube-apiserver, kubectl) and rustls (kube) accept.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Error, Result, io_err};

/// CN of the admin client certificate.
pub const ADMIN_USER: &str = "mcall-admin";
/// Group of the admin client certificate: bypasses RBAC, like kubeadm's admin.conf.
pub const ADMIN_GROUP: &str = "system:masters";
/// The `kubernetes` Service's cluster IP: the first address of the apiserver's
/// `--service-cluster-ip-range` (see [`crate::process`]).
pub(crate) const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// CN of kube-controller-manager's client certificate: the user name Kubernetes gives it, so
/// its requests show up under that name in logs and managedFields.
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";

/// Paths of the generated files, plus the PEMs a kubeconfig embeds.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_public_key: PathBuf,
    pub sa_signing_key: PathBuf,
    pub controller_manager_serving_cert: PathBuf,
    pub controller_manager_serving_key: PathBuf,
    pub ca_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub controller_manager_cert_pem: String,
    pub controller_manager_key_pem: String,
    /// The node's identities, when the plane has a node.
    pub node: Option<NodePki>,
}

/// A client identity: the user name the apiserver gives it and its certificate, PEM.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub user: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The local node's certificates ([`crate::node`]).
#[derive(Debug, Clone)]
pub(crate) struct NodePki {
    /// kubelet's client identity: `system:node:<name>` in `system:nodes`, so the Node
    /// authorizer and NodeRestriction treat it exactly as a real kubelet.
    pub kubelet: Identity,
    /// kubelet's serving certificate (SAN: the node address), from the plane's CA.
    pub kubelet_serving_cert: PathBuf,
    pub kubelet_serving_key: PathBuf,
    /// What kube-apiserver presents to kubelets (logs, exec): `system:masters`.
    pub apiserver_kubelet_client_cert: PathBuf,
    pub apiserver_kubelet_client_key: PathBuf,
    /// kube-scheduler and kube-proxy, as their bootstrap RBAC names them.
    pub scheduler: Identity,
    pub proxy: Identity,
    /// CoreDNS; its ClusterRole is installed with the node.
    pub dns: Identity,
}

/// The local node's name and address, for its certificates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeNames<'a> {
    pub name: &'a str,
    pub address: &'a str,
}

/// CN of CoreDNS's client certificate.
pub(crate) const DNS_USER: &str = "mcall:coredns";

/// A certificate and its key, PEM.
struct Signed {
    cert_pem: String,
    key_pem: String,
}

/// A client certificate: the apiserver maps CN to the user and O to the group.
fn client_cert(
    issuer: &Issuer<'_, KeyPair>,
    what: &'static str,
    cn: &str,
    org: &str,
) -> Result<Signed> {
    let key = KeyPair::generate().map_err(pki_err(what))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, (!org.is_empty()).then_some(org));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).map_err(pki_err(what))?;
    Ok(Signed {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `sans` (IP addresses or DNS names).
fn serving_cert(
    issuer: &Issuer<'_, KeyPair>,
    what: &'static str,
    cn: &str,
    sans: &[&str],
) -> Result<Signed> {
    let key = KeyPair::generate().map_err(pki_err(what))?;
    let sans = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut params = CertificateParams::new(sans).map_err(pki_err(what))?;
    params.distinguished_name = name(cn, None);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, issuer).map_err(pki_err(what))?;
    Ok(Signed {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::GeneratePki { what, source }
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}

fn identity(
    issuer: &Issuer<'_, KeyPair>,
    what: &'static str,
    cn: &str,
    org: &str,
) -> Result<Identity> {
    let signed = client_cert(issuer, what, cn, org)?;
    Ok(Identity {
        user: cn.to_string(),
        cert_pem: signed.cert_pem,
        key_pem: signed.key_pem,
    })
}

/// Writes `pem` to `dir/name`.
fn write_pem(dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    crate::write_private(&path, pem)?;
    Ok(path)
}

fn node_pki(issuer: &Issuer<'_, KeyPair>, dir: &Path, node: NodeNames<'_>) -> Result<NodePki> {
    let serving = serving_cert(
        issuer,
        "kubelet serving certificate",
        node.name,
        &[node.address, node.name],
    )?;
    let apiserver_client = client_cert(
        issuer,
        "apiserver kubelet-client certificate",
        "kube-apiserver-kubelet-client",
        ADMIN_GROUP,
    )?;
    Ok(NodePki {
        kubelet: identity(
            issuer,
            "kubelet client certificate",
            &format!("system:node:{}", node.name),
            "system:nodes",
        )?,
        kubelet_serving_cert: write_pem(dir, "kubelet.crt", &serving.cert_pem)?,
        kubelet_serving_key: write_pem(dir, "kubelet.key", &serving.key_pem)?,
        apiserver_kubelet_client_cert: write_pem(
            dir,
            "apiserver-kubelet-client.crt",
            &apiserver_client.cert_pem,
        )?,
        apiserver_kubelet_client_key: write_pem(
            dir,
            "apiserver-kubelet-client.key",
            &apiserver_client.key_pem,
        )?,
        scheduler: identity(
            issuer,
            "scheduler client certificate",
            "system:kube-scheduler",
            "",
        )?,
        proxy: identity(
            issuer,
            "kube-proxy client certificate",
            "system:kube-proxy",
            "",
        )?,
        dns: identity(issuer, "CoreDNS client certificate", DNS_USER, "")?,
    })
}

/// Generates the PKI and writes it into `dir` (created if needed); with `node`, also the
/// node's certificates, and the apiserver's serving certificate covers the node address and
/// the `kubernetes` Service's cluster IP.
/// A throwaway CA and a serving certificate it signed for 127.0.0.1 and localhost, written as
/// `dir/tls.crt` and `dir/tls.key` (for a server on loopback the API server calls, such as the
/// operator's admission webhook); returns the CA's PEM (a registration's caBundle).
pub fn loopback_serving_pair(dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(io_err("creating the certificate directory", dir))?;
    let ca_key = KeyPair::generate().map_err(pki_err("CA key"))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("mcall-loopback-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca_params
        .self_signed(&ca_key)
        .map_err(pki_err("CA certificate"))?
        .pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let signed = serving_cert(
        &issuer,
        "loopback serving certificate",
        "127.0.0.1",
        &["127.0.0.1", "localhost"],
    )?;
    write_pem(dir, "tls.key", &signed.key_pem)?;
    write_pem(dir, "tls.crt", &signed.cert_pem)?;
    Ok(ca_pem)
}

pub(crate) fn generate(dir: &Path, node: Option<NodeNames<'_>>) -> Result<Pki> {
    std::fs::create_dir_all(dir).map_err(io_err("creating the PKI directory", dir))?;

    // CA. Default validity (1975..4096) is fine for a throwaway CA and avoids clock skew issues.
    let ca_key = KeyPair::generate().map_err(pki_err("CA key"))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("mcall-test-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(pki_err("CA certificate"))?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    // Serving certificate: clients reach the apiserver as 127.0.0.1 or localhost, pods of the
    // local node through the `kubernetes` Service (its names and its cluster IP, the first of
    // --service-cluster-ip-range) and kube-proxy's DNAT to the node address.
    let mut sans = vec![
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        KUBERNETES_SERVICE_IP,
    ];
    if let Some(node) = node {
        sans.push(node.address);
    }
    let serving = serving_cert(
        &issuer,
        "apiserver serving certificate",
        "kube-apiserver",
        &sans,
    )?;
    let admin = client_cert(&issuer, "admin client certificate", ADMIN_USER, ADMIN_GROUP)?;
    // kube-controller-manager runs with --use-service-account-credentials=false, so every
    // controller acts as this one user. Its bootstrap ClusterRole (system:kube-controller-manager)
    // only lets it list and watch; deleting dependents and namespace contents is granted to the
    // per-controller ServiceAccounts it would otherwise use. Hence system:masters, like admin.
    let cm_client = client_cert(
        &issuer,
        "controller-manager client certificate",
        CONTROLLER_MANAGER_USER,
        ADMIN_GROUP,
    )?;
    // Its own serving certificate from our CA, so the readiness probe can verify /healthz
    // (without one it makes up a self-signed certificate).
    let cm_serving = serving_cert(
        &issuer,
        "controller-manager serving certificate",
        "kube-controller-manager",
        &["127.0.0.1", "localhost"],
    )?;

    // Service-account token signing key. The public half goes in its own file: the
    // `--service-account-key-file` parser is pickiest about private-key formats.
    let sa_key = KeyPair::generate().map_err(pki_err("service-account signing key"))?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_public_key: dir.join("sa.pub"),
        sa_signing_key: dir.join("sa.key"),
        controller_manager_serving_cert: dir.join("controller-manager.crt"),
        controller_manager_serving_key: dir.join("controller-manager.key"),
        ca_pem,
        admin_cert_pem: admin.cert_pem,
        admin_key_pem: admin.key_pem,
        controller_manager_cert_pem: cm_client.cert_pem,
        controller_manager_key_pem: cm_client.key_pem,
        node: node.map(|n| node_pki(&issuer, dir, n)).transpose()?,
    };
    let files = [
        (&pki.ca_cert, pki.ca_pem.clone()),
        (&pki.serving_cert, serving.cert_pem),
        (&pki.serving_key, serving.key_pem),
        (&pki.sa_public_key, sa_key.public_key_pem()),
        (&pki.sa_signing_key, sa_key.serialize_pem()),
        (&dir.join("admin.crt"), pki.admin_cert_pem.clone()),
        (&dir.join("admin.key"), pki.admin_key_pem.clone()),
        (&pki.controller_manager_serving_cert, cm_serving.cert_pem),
        (&pki.controller_manager_serving_key, cm_serving.key_pem),
    ];
    for (path, pem) in files {
        crate::write_private(path, &pem)?;
    }
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_all_files_as_pem() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path(), None).unwrap();
        for path in [
            &pki.ca_cert,
            &pki.serving_cert,
            &pki.serving_key,
            &pki.sa_public_key,
            &pki.sa_signing_key,
            &pki.controller_manager_serving_cert,
            &pki.controller_manager_serving_key,
        ] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{}", path.display());
        }
        assert!(pki.admin_key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(pki.ca_pem.contains("BEGIN CERTIFICATE"));
        assert!(pki.controller_manager_key_pem.contains("BEGIN PRIVATE KEY"));
    }
}
