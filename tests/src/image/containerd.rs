//! Getting image archives into a containerd with `ctr`, the client that ships with it, so no
//! registry is needed: the kubelet finds an imported image in containerd's `k8s.io` namespace
//! and, with `imagePullPolicy: IfNotPresent` (the chart's default), never pulls it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::archive::ImageArchive;
use super::digest::Digest;
use super::reference::ImageRef;
use crate::{Error, Result};

/// The containerd namespace the CRI plugin, and so the kubelet, uses.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// A containerd, reached through `ctr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerd {
    /// Its gRPC socket.
    pub address: PathBuf,
    pub namespace: String,
    /// The snapshotter to unpack into; `None` is containerd's default (overlayfs), which is
    /// also the CRI plugin's. An image unpacked elsewhere is unpacked again on first use.
    pub snapshotter: Option<String>,
    /// The `ctr` binary.
    pub ctr: PathBuf,
}

/// What [`Containerd::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The reference was there with the same image ID; nothing was done.
    AlreadyPresent,
    Imported,
}

impl Containerd {
    /// The containerd at `address`, in the `k8s.io` namespace, with `ctr` from PATH.
    pub fn new(address: impl Into<PathBuf>) -> Containerd {
        Containerd {
            address: address.into(),
            namespace: K8S_NAMESPACE.to_string(),
            snapshotter: None,
            ctr: PathBuf::from("ctr"),
        }
    }

    /// Imports the archive and unpacks it, then checks that its reference names its image ID.
    ///
    /// No `--all-platforms`: the archive holds one image for the host's platform, which is the
    /// platform `ctr` imports and unpacks by default. No `--digests`: the reference from
    /// `RepoTags` is the only name wanted, and it already changes with the content.
    pub fn import(&self, archive: &ImageArchive) -> Result<ImageRef> {
        let mut args = vec!["images".to_string(), "import".to_string()];
        if let Some(snapshotter) = &self.snapshotter {
            args.extend(["--snapshotter".to_string(), snapshotter.clone()]);
        }
        args.push(archive.path.to_string_lossy().into_owned());
        self.ctr(&format!("images import {}", archive.path.display()), &args)?;
        match self.image_id(&archive.reference)? {
            Some(id) if id == archive.id => Ok(archive.reference.clone()),
            found => Err(self.fail(
                &format!("images import {}", archive.path.display()),
                format!(
                    "afterwards {} has image ID {found:?}, not {}",
                    archive.reference, archive.id
                ),
            )),
        }
    }

    /// Whether `archive`'s reference is present with the archive's image ID.
    pub fn has_image(&self, archive: &ImageArchive) -> Result<bool> {
        Ok(self.image_id(&archive.reference)?.as_ref() == Some(&archive.id))
    }

    /// Imports the archive unless [`Self::has_image`] says it is there already.
    pub fn ensure(&self, archive: &ImageArchive) -> Result<Imported> {
        if self.has_image(archive)? {
            return Ok(Imported::AlreadyPresent);
        }
        self.import(archive)?;
        Ok(Imported::Imported)
    }

    /// The image ID (config digest) `reference` names, or `None` when it is not there.
    ///
    /// containerd records the manifest digest; the config digest is read from that manifest.
    /// A reference to an index (not one of ours) gives the index digest, which never equals an
    /// archive's image ID, so [`Self::ensure`] replaces it.
    pub fn image_id(&self, reference: &ImageRef) -> Result<Option<Digest>> {
        let filter = format!("name=={reference}");
        let listing = self.ctr("images ls", &["images", "ls", &filter])?;
        let Some(target) = parse_images_ls(&listing, &reference.to_string()) else {
            return Ok(None);
        };
        let op = format!("content get {target}");
        let manifest = self.ctr(&op, &["content", "get", &target.to_string()])?;
        Ok(Some(config_digest(&manifest).unwrap_or(target)))
    }

    /// Runs `ctr` with the address and namespace; stdout, or an error naming the operation.
    fn ctr(&self, op: &str, args: &[impl AsRef<str>]) -> Result<String> {
        let output = Command::new(&self.ctr)
            .arg("--address")
            .arg(&self.address)
            .args(["--namespace", &self.namespace, "--connect-timeout", "10s"])
            .args(args.iter().map(AsRef::as_ref))
            .output()
            .map_err(|e| self.fail(op, format!("running {} failed: {e}", self.ctr.display())))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(self.fail(
                op,
                format!("exited with {}: {}", output.status, stderr.trim()),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn fail(&self, op: &str, reason: String) -> Error {
        Error::Containerd {
            op: op.to_string(),
            address: self.address.clone(),
            reason,
        }
    }
}

/// The target digest of `reference` in `ctr images ls` output (columns REF, TYPE, DIGEST, …;
/// a reference has no spaces).
pub fn parse_images_ls(listing: &str, reference: &str) -> Option<Digest> {
    listing.lines().skip(1).find_map(|line| {
        let mut columns = line.split_whitespace();
        (columns.next() == Some(reference))
            .then(|| columns.nth(1).and_then(Digest::parse))
            .flatten()
    })
}

/// The config digest of a manifest, or `None` when `manifest` is not one (an index).
pub fn config_digest(manifest: &str) -> Option<Digest> {
    let manifest: Value = serde_json::from_str(manifest).ok()?;
    Digest::parse(manifest.get("config")?.get("digest")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_ls_gives_the_target_of_the_exact_reference() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let listing = format!(
            "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
             mcall.local/x:1 application/vnd.docker.distribution.manifest.v2+json {a} 1.9 MiB linux/amd64 -\n\
             mcall.local/x:12 application/vnd.docker.distribution.manifest.v2+json {b} 1.9 MiB linux/amd64 -\n"
        );
        assert_eq!(parse_images_ls(&listing, "mcall.local/x:12"), Some(b));
        assert_eq!(parse_images_ls(&listing, "mcall.local/x:1"), Some(a));
        assert_eq!(parse_images_ls(&listing, "mcall.local/x"), None);
        assert_eq!(
            parse_images_ls("REF TYPE DIGEST SIZE PLATFORMS LABELS\n", "x"),
            None
        );
    }

    #[test]
    fn config_digest_comes_from_a_manifest_only() {
        let config = Digest::of(b"config");
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{config}","size":209}},"layers":[]}}"#
        );
        assert_eq!(config_digest(&manifest), Some(config));
        assert_eq!(config_digest(r#"{"schemaVersion":2,"manifests":[]}"#), None);
        assert_eq!(config_digest("not json"), None);
    }
}
