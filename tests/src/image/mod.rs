//! Container images without a container engine or a registry: single-layer docker-archive tars
//! that `ctr -n k8s.io images import` loads into the local node's containerd.
//!
//! ```text
//! recipes.rs   what each image holds: operator (mcall + glibc + CA bundle + busybox sh),
//!              shell (busybox), pause; host.rs finds the host files (ldd, busybox --list)
//! recipe.rs    the ImageRecipe data type
//! layer.rs     a reproducible layer tar (sorted, mtime 0, owner 0:0)
//! config.rs    the image config JSON; build.rs: recipe → Image (its digest is the image ID)
//! reference.rs mcall.local/NAME:<first 12 hex of the image ID>
//! archive.rs   the docker-archive tar (manifest.json, <id>.json, <diff id>/layer.tar)
//! containerd.rs import with `ctr`, and skip what is there with the same image ID
//! test_containerd.rs  a private, throwaway containerd for tests
//! ```
//!
//! Same inputs give the same bytes, so an unchanged rebuild has the same reference and
//! [`Containerd::ensure`] does nothing.

mod archive;
mod build;
mod config;
mod containerd;
mod digest;
mod host;
mod layer;
mod recipe;
mod recipes;
mod reference;
mod test_containerd;

use std::path::Path;

pub use archive::{ImageArchive, manifest_json, write_archive_file, write_docker_archive};
pub use build::Image;
pub use config::image_config;
pub use containerd::{Containerd, Imported, K8S_NAMESPACE, config_digest, parse_images_ls};
pub use digest::Digest;
pub use host::{busybox_applets, parse_applets, parse_ldd, shared_libraries};
pub use layer::{FileSource, Layer, LayerEntry, build_layer};
pub use recipe::{ImageRecipe, Platform};
pub use recipes::{
    HOST_BUSYBOX, HOST_CA_BUNDLE, MCALL_UID, OPERATOR_IMAGE, OperatorFiles, PAUSE_IMAGE, PAUSE_UID,
    SHELL_IMAGE, ShellFiles, discover_pause, operator_recipe, pause_recipe, shell_recipe,
};
pub use reference::ImageRef;
pub use test_containerd::TestContainerd;

use crate::{Result, io_err};

/// The project's three images, built from host files and written to `out_dir` as
/// `mcall-operator.tar`, `mcall-shell.tar` and `pause.tar` (operator, shell, pause order).
///
/// `mcall` is the operator binary (release or debug build), `pause` the static pause binary.
pub fn write_project_images(
    mcall: &Path,
    pause: &Path,
    out_dir: &Path,
) -> Result<Vec<ImageArchive>> {
    let recipes = [
        operator_recipe(&OperatorFiles::discover(mcall)?),
        shell_recipe(&ShellFiles::discover()?),
        pause_recipe(&discover_pause(pause)?),
    ];
    std::fs::create_dir_all(out_dir).map_err(io_err("creating the image directory", out_dir))?;
    let platform = Platform::host();
    recipes
        .iter()
        .map(|recipe| {
            let image = Image::build(recipe, &platform)?;
            let file_name = recipe.name.rsplit('/').next().unwrap_or(&recipe.name);
            write_archive_file(&image, &out_dir.join(format!("{file_name}.tar")))
        })
        .collect()
}
