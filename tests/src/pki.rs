//! A throwaway PKI for one control plane: CA, apiserver serving cert, admin client cert and the
//! service-account signing key. All keys are ECDSA P-256 in PKCS#8 PEM, which both Go
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

/// Paths of the generated files, plus the PEMs a kubeconfig embeds.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_public_key: PathBuf,
    pub sa_signing_key: PathBuf,
    pub ca_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
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

/// Generates the PKI and writes it into `dir` (created if needed).
pub(crate) fn generate(dir: &Path) -> Result<Pki> {
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

    // Serving certificate: clients reach the apiserver as 127.0.0.1 or localhost; in-cluster
    // names are included so the same cert would work behind the `kubernetes` Service.
    let serving_key = KeyPair::generate().map_err(pki_err("apiserver serving key"))?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])
    .map_err(pki_err("apiserver serving certificate SANs"))?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving
        .signed_by(&serving_key, &issuer)
        .map_err(pki_err("apiserver serving certificate"))?;

    // Admin client certificate: the apiserver maps CN to the user and O to groups.
    let admin_key = KeyPair::generate().map_err(pki_err("admin client key"))?;
    let mut admin = CertificateParams::default();
    admin.distinguished_name = name(ADMIN_USER, Some(ADMIN_GROUP));
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .map_err(pki_err("admin client certificate"))?;

    // Service-account token signing key. The public half goes in its own file: the
    // `--service-account-key-file` parser is pickiest about private-key formats.
    let sa_key = KeyPair::generate().map_err(pki_err("service-account signing key"))?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_public_key: dir.join("sa.pub"),
        sa_signing_key: dir.join("sa.key"),
        ca_pem,
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    };
    let files = [
        (&pki.ca_cert, pki.ca_pem.clone()),
        (&pki.serving_cert, serving_cert.pem()),
        (&pki.serving_key, serving_key.serialize_pem()),
        (&pki.sa_public_key, sa_key.public_key_pem()),
        (&pki.sa_signing_key, sa_key.serialize_pem()),
        (&dir.join("admin.crt"), pki.admin_cert_pem.clone()),
        (&dir.join("admin.key"), pki.admin_key_pem.clone()),
    ];
    for (path, pem) in files {
        std::fs::write(path, pem).map_err(io_err("writing", path))?;
    }
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_all_files_as_pem() {
        let dir = tempfile::tempdir().unwrap();
        let pki = generate(dir.path()).unwrap();
        for path in [
            &pki.ca_cert,
            &pki.serving_cert,
            &pki.serving_key,
            &pki.sa_public_key,
            &pki.sa_signing_key,
        ] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{}", path.display());
        }
        assert!(pki.admin_key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(pki.ca_pem.contains("BEGIN CERTIFICATE"));
    }
}
