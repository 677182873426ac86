//! What an image is made of: its files and how it runs. A recipe is plain data; the recipes
//! themselves are in [`super::recipes`], the archive writer in [`super::archive`].

use std::collections::BTreeMap;

use super::layer::LayerEntry;

/// One single-layer image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecipe {
    /// The repository part of the reference, e.g. `mcall.local/mcall-operator`; the tag comes
    /// from the content ([`super::ImageRef::for_image`]).
    pub name: String,
    /// `uid:gid` (numeric, so it needs no /etc/passwd lookup and `runAsNonRoot` can verify it).
    pub user: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// `port/protocol`, e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
    pub workdir: String,
    pub labels: BTreeMap<String, String>,
    pub files: Vec<LayerEntry>,
}

/// The platform an image's binaries run on, in the Go names image configs use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
}

impl Platform {
    /// The build host's platform: the recipes package host binaries, so this is the only
    /// platform they can run on.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_platform_uses_go_names() {
        let p = Platform::host();
        assert_eq!(p.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(p.architecture, "amd64");
        }
    }
}
