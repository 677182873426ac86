//! The project's three images: the operator, a busybox shell for `cmd` steps run in pods, and
//! the local node's pause (sandbox) image. Finding the host files is `discover`; turning them
//! into a recipe is pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::host::{busybox_applets, shared_libraries};
use super::layer::{FileSource, LayerEntry};
use super::recipe::ImageRecipe;
use crate::{Error, Result};

pub const OPERATOR_IMAGE: &str = "mcall.local/mcall-operator";
pub const SHELL_IMAGE: &str = "mcall.local/mcall-shell";
pub const PAUSE_IMAGE: &str = "mcall.local/pause";

/// The user the chart runs the operator as (`runAsUser`/`runAsGroup`); the shell image uses it
/// too, so files a step writes on a shared volume belong to the same user.
pub const MCALL_UID: u32 = 65532;
/// The pause image's user: the one upstream's pause image runs as.
pub const PAUSE_UID: u32 = 65535;

/// Debian's `busybox-static`: static, so it needs no libraries in the images.
pub const HOST_BUSYBOX: &str = "/bin/busybox";
/// The bundle `update-ca-certificates` builds from Debian's `ca-certificates`; the operator's
/// TLS (rustls-native-certs) reads it for HTTPS checks.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The host files the operator image is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorFiles {
    pub mcall: PathBuf,
    /// What `ldd` reports for `mcall`, loader included; each goes to the same path in the image.
    pub libraries: Vec<PathBuf>,
    pub busybox: PathBuf,
    pub ca_bundle: PathBuf,
}

impl OperatorFiles {
    /// The files for the `mcall` binary at `mcall` (a release or a debug build), with the host's
    /// busybox and CA bundle.
    pub fn discover(mcall: &Path) -> Result<OperatorFiles> {
        let files = OperatorFiles {
            mcall: mcall.to_path_buf(),
            libraries: shared_libraries(&existing(OPERATOR_IMAGE, mcall, "")?)?,
            busybox: host_busybox(OPERATOR_IMAGE)?,
            ca_bundle: existing(
                OPERATOR_IMAGE,
                Path::new(HOST_CA_BUNDLE),
                "; install Debian's ca-certificates",
            )?,
        };
        for library in &files.libraries {
            existing(OPERATOR_IMAGE, library, "")?;
        }
        Ok(files)
    }
}

/// The operator image: `mcall` with the glibc it was linked against, the CA bundle, a non-root
/// user, a writable /tmp and `/bin/sh`.
///
/// `/bin/sh` is busybox because `cmd` tasks run `/bin/sh -c <command>` inside the operator.
/// Debian's static busybox runs its applets from the shell without /bin links (`ls`, `grep`,
/// `wget` … work inside `sh -c`), so only `sh` is linked; a task that execs another tool
/// directly finds nothing else on PATH. The chart runs the image read-only, as 65532, with an
/// emptyDir over /tmp.
pub fn operator_recipe(files: &OperatorFiles) -> ImageRecipe {
    let mut entries = vec![
        LayerEntry::file(
            "/usr/local/bin/mcall",
            0o755,
            FileSource::Host(files.mcall.clone()),
        ),
        LayerEntry::file(
            "/etc/ssl/certs/ca-certificates.crt",
            0o644,
            FileSource::Host(files.ca_bundle.clone()),
        ),
        LayerEntry::file(
            "/bin/busybox",
            0o755,
            FileSource::Host(files.busybox.clone()),
        ),
        LayerEntry::symlink("/bin/sh", "busybox"),
    ];
    // 0755 for all: the loader must be executable, and a library does not mind.
    entries.extend(
        files.libraries.iter().map(|lib| {
            LayerEntry::file(lib.to_string_lossy(), 0o755, FileSource::Host(lib.clone()))
        }),
    );
    entries.extend(user_files());
    ImageRecipe {
        name: OPERATOR_IMAGE.into(),
        user: format!("{MCALL_UID}:{MCALL_UID}"),
        entrypoint: vec!["/usr/local/bin/mcall".into()],
        cmd: vec!["operator".into()],
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
        exposed_ports: vec!["8080/tcp".into()],
        workdir: "/".into(),
        labels: labels("mcall-operator", "The mcall Kubernetes operator"),
        files: entries,
    }
}

/// The host files of the shell image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellFiles {
    pub busybox: PathBuf,
    /// `busybox --list`, each linked as /bin/<applet>.
    pub applets: Vec<String>,
}

impl ShellFiles {
    /// The host's busybox and its applets.
    pub fn discover() -> Result<ShellFiles> {
        let busybox = host_busybox(SHELL_IMAGE)?;
        let applets = busybox_applets(&busybox)?;
        Ok(ShellFiles { busybox, applets })
    }
}

/// `mcall.local/mcall-shell`: busybox with every applet in /bin, for `cmd` steps run in pods.
pub fn shell_recipe(files: &ShellFiles) -> ImageRecipe {
    let mut entries = vec![LayerEntry::file(
        "/bin/busybox",
        0o755,
        FileSource::Host(files.busybox.clone()),
    )];
    entries.extend(
        files
            .applets
            .iter()
            .map(|applet| LayerEntry::symlink(format!("/bin/{applet}"), "busybox")),
    );
    entries.extend(user_files());
    ImageRecipe {
        name: SHELL_IMAGE.into(),
        user: format!("{MCALL_UID}:{MCALL_UID}"),
        entrypoint: vec!["/bin/sh".into()],
        cmd: vec![],
        env: vec!["PATH=/bin".into()],
        exposed_ports: vec![],
        workdir: "/".into(),
        labels: labels("mcall-shell", "busybox for mcall's cmd steps"),
        files: entries,
    }
}

/// The checked path of the pause binary: it must be static, since the image has no libraries.
pub fn discover_pause(pause: &Path) -> Result<PathBuf> {
    static_binary(
        PAUSE_IMAGE,
        pause,
        "`cargo xtask tools` builds it from xtask/tools/pause",
        "build it with CGO_ENABLED=0",
    )
}

/// `mcall.local/pause`: the static pause binary alone.
pub fn pause_recipe(pause: &Path) -> ImageRecipe {
    ImageRecipe {
        name: PAUSE_IMAGE.into(),
        user: format!("{PAUSE_UID}:{PAUSE_UID}"),
        entrypoint: vec!["/pause".into()],
        cmd: vec![],
        env: vec![],
        exposed_ports: vec![],
        workdir: "/".into(),
        labels: labels("pause", "the local node's pod sandbox"),
        files: vec![LayerEntry::file(
            "/pause",
            0o755,
            FileSource::Host(pause.to_path_buf()),
        )],
    }
}

/// /etc/passwd and /etc/group naming the non-root user, and a world-writable sticky /tmp.
fn user_files() -> Vec<LayerEntry> {
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\n\
         mcall:x:{MCALL_UID}:{MCALL_UID}:mcall:/tmp:/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nmcall:x:{MCALL_UID}:\nnogroup:x:65534:\n");
    vec![
        LayerEntry::file("/etc/passwd", 0o644, FileSource::Bytes(passwd.into_bytes())),
        LayerEntry::file("/etc/group", 0o644, FileSource::Bytes(group.into_bytes())),
        LayerEntry::dir("/tmp", 0o1777),
    ]
}

fn labels(title: &str, description: &str) -> BTreeMap<String, String> {
    [
        ("org.opencontainers.image.title", title),
        ("org.opencontainers.image.description", description),
        (
            "org.opencontainers.image.version",
            env!("CARGO_PKG_VERSION"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The host's busybox, which must be static: Debian's `busybox` package (the other one that
/// installs /bin/busybox) is linked against glibc the shell image does not have.
fn host_busybox(image: &str) -> Result<PathBuf> {
    let fix = "install Debian's busybox-static";
    static_binary(image, Path::new(HOST_BUSYBOX), fix, fix)
}

/// `path` if it is a statically linked binary; `missing` and `dynamic` say what to do otherwise.
fn static_binary(image: &str, path: &Path, missing: &str, dynamic: &str) -> Result<PathBuf> {
    let path = existing(image, path, &format!("; {missing}"))?;
    let libraries = shared_libraries(&path)?;
    if !libraries.is_empty() {
        return Err(Error::ImageRecipe {
            image: image.into(),
            reason: format!(
                "{} is dynamically linked ({libraries:?}); {dynamic}",
                path.display()
            ),
        });
    }
    Ok(path)
}

/// `path` if it exists (following symlinks), else an error naming the image that needs it and,
/// in `hint`, how to get the file.
fn existing(image: &str, path: &Path, hint: &str) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Error::ImageRecipe {
        image: image.to_string(),
        reason: format!("{} does not exist or is not a file{hint}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(recipe: &'a ImageRecipe, path: &str) -> &'a LayerEntry {
        recipe
            .files
            .iter()
            .find(|e| e.path() == path)
            .unwrap_or_else(|| panic!("{} has no {path}", recipe.name))
    }

    fn operator() -> ImageRecipe {
        operator_recipe(&OperatorFiles {
            mcall: "/build/mcall".into(),
            libraries: vec![
                "/lib/x86_64-linux-gnu/libc.so.6".into(),
                "/lib64/ld-linux-x86-64.so.2".into(),
            ],
            busybox: "/bin/busybox".into(),
            ca_bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
        })
    }

    #[test]
    fn operator_runs_mcall_as_the_charts_user() {
        let r = operator();
        assert_eq!(r.name, "mcall.local/mcall-operator");
        assert_eq!(r.user, "65532:65532");
        assert_eq!(r.entrypoint, ["/usr/local/bin/mcall"]);
        assert_eq!(r.cmd, ["operator"]);
        assert_eq!(r.exposed_ports, ["8080/tcp"]);
        assert_eq!(r.env, ["PATH=/usr/local/bin:/usr/bin:/bin"]);
    }

    #[test]
    fn operator_has_its_libraries_where_ldd_found_them_and_a_shell() {
        let r = operator();
        assert_eq!(
            entry(&r, "/usr/local/bin/mcall"),
            &LayerEntry::file(
                "/usr/local/bin/mcall",
                0o755,
                FileSource::Host("/build/mcall".into())
            )
        );
        for lib in [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ] {
            assert_eq!(
                entry(&r, lib),
                &LayerEntry::file(lib, 0o755, FileSource::Host(lib.into()))
            );
        }
        assert_eq!(
            entry(&r, "/bin/sh"),
            &LayerEntry::symlink("/bin/sh", "busybox")
        );
        assert_eq!(entry(&r, "/tmp"), &LayerEntry::dir("/tmp", 0o1777));
        let LayerEntry::File {
            source: FileSource::Bytes(passwd),
            ..
        } = entry(&r, "/etc/passwd")
        else {
            panic!("passwd is generated");
        };
        assert!(
            String::from_utf8_lossy(passwd).contains("mcall:x:65532:65532:"),
            "{passwd:?}"
        );
        entry(&r, "/etc/group");
        entry(&r, "/etc/ssl/certs/ca-certificates.crt");
    }

    #[test]
    fn shell_links_every_applet_to_busybox() {
        let r = shell_recipe(&ShellFiles {
            busybox: "/bin/busybox".into(),
            applets: vec!["[".into(), "sh".into(), "wget".into()],
        });
        assert_eq!(r.name, "mcall.local/mcall-shell");
        assert_eq!(r.entrypoint, ["/bin/sh"]);
        assert_eq!(r.user, "65532:65532");
        for applet in ["[", "sh", "wget"] {
            let path = format!("/bin/{applet}");
            assert_eq!(entry(&r, &path), &LayerEntry::symlink(&path, "busybox"));
        }
    }

    #[test]
    fn pause_is_the_binary_alone() {
        let r = pause_recipe(Path::new("/tools/pause"));
        assert_eq!(r.name, "mcall.local/pause");
        assert_eq!(r.entrypoint, ["/pause"]);
        assert_eq!(r.user, "65535:65535");
        assert_eq!(
            r.files,
            [LayerEntry::file(
                "/pause",
                0o755,
                FileSource::Host("/tools/pause".into())
            )]
        );
    }

    #[test]
    fn a_missing_host_file_names_the_image_and_the_path() {
        let err = OperatorFiles::discover(Path::new("/nonexistent/mcall")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("mcall.local/mcall-operator"), "{message}");
        assert!(message.contains("/nonexistent/mcall"), "{message}");
    }
}
