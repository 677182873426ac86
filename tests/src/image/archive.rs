//! The docker-archive format (what `docker save` writes and `ctr images import` reads): a tar
//! of `manifest.json`, the config as `<hex>.json` and each layer as `<hex>/layer.tar`.
//!
//! Docker's format rather than an OCI layout because it carries the full reference in
//! `RepoTags`, which `ctr images import` uses as the image name as it stands; an OCI archive's
//! names need `--base-name` and are only tags.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use tar::{Builder, EntryType, Header};

use super::build::Image;
use super::config::canonical_json;
use super::digest::Digest;
use super::reference::ImageRef;
use crate::{Result, io_err};

/// An image archive on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    pub path: PathBuf,
    pub reference: ImageRef,
    /// The image ID (config digest).
    pub id: Digest,
}

/// The archive's file names, by content: the layout `docker save` used before its OCI one.
pub(crate) fn config_name(image: &Image) -> String {
    format!("{}.json", image.id.hex())
}

pub(crate) fn layer_name(image: &Image) -> String {
    format!("{}/layer.tar", image.layer.diff_id.hex())
}

/// The `manifest.json` of an archive holding just `image`.
pub fn manifest_json(image: &Image) -> Vec<u8> {
    canonical_json(&json!([{
        "Config": config_name(image),
        "RepoTags": [image.reference.to_string()],
        "Layers": [layer_name(image)],
    }]))
}

/// Writes the docker-archive of `image` to `out`; the same image gives the same bytes.
pub fn write_docker_archive(image: &Image, out: impl Write) -> std::io::Result<()> {
    let mut builder = Builder::new(out);
    let layer_dir = image.layer.diff_id.hex().to_string();
    append(&mut builder, &config_name(image), &image.config)?;
    append_dir(&mut builder, &layer_dir)?;
    append(&mut builder, &layer_name(image), &image.layer.tar)?;
    append(&mut builder, "manifest.json", &manifest_json(image))?;
    builder.into_inner()?.flush()
}

/// Writes the archive to `path` (through a temporary file beside it, so an interrupted write
/// never leaves a truncated archive under the final name).
pub fn write_archive_file(image: &Image, path: &Path) -> Result<ImageArchive> {
    let tmp = path.with_extension("tar.partial");
    let file = File::create(&tmp).map_err(io_err("creating the image archive", &tmp))?;
    write_docker_archive(image, BufWriter::new(file))
        .map_err(io_err("writing the image archive", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("renaming the image archive to", path))?;
    Ok(ImageArchive {
        path: path.to_path_buf(),
        reference: image.reference.clone(),
        id: image.id.clone(),
    })
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn append(builder: &mut Builder<impl Write>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = header(EntryType::Regular, 0o644, data.len() as u64);
    builder.append_data(&mut header, name, data)
}

fn append_dir(builder: &mut Builder<impl Write>, name: &str) -> std::io::Result<()> {
    let mut header = header(EntryType::Directory, 0o755, 0);
    builder.append_data(&mut header, name, std::io::empty())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use serde_json::Value;

    use super::*;
    use crate::image::{FileSource, ImageRecipe, LayerEntry, Platform};

    fn recipe(content: &[u8]) -> ImageRecipe {
        ImageRecipe {
            name: "mcall.local/test".into(),
            user: "65532:65532".into(),
            entrypoint: vec!["/bin/x".into()],
            cmd: vec!["run".into()],
            env: vec![],
            exposed_ports: vec![],
            workdir: "/".into(),
            labels: BTreeMap::new(),
            files: vec![
                LayerEntry::file("/bin/x", 0o755, FileSource::Bytes(content.to_vec())),
                LayerEntry::dir("/tmp", 0o1777),
            ],
        }
    }

    fn archive_bytes(content: &[u8]) -> (Image, Vec<u8>) {
        let image = Image::build(&recipe(content), &Platform::host()).unwrap();
        let mut bytes = Vec::new();
        write_docker_archive(&image, &mut bytes).unwrap();
        (image, bytes)
    }

    /// The regular files of a tar, by name.
    fn tar_files(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type() == EntryType::Regular {
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                files.insert(name, data);
            }
        }
        files
    }

    #[test]
    fn manifest_config_and_layer_name_each_other_by_digest() {
        let (image, bytes) = archive_bytes(b"binary");
        let files = tar_files(&bytes);
        let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let entry = &manifest.as_array().unwrap()[..];
        assert_eq!(entry.len(), 1);
        let entry = &entry[0];
        assert_eq!(entry["RepoTags"], json!([image.reference.to_string()]));

        let config_name = entry["Config"].as_str().unwrap();
        let config = &files[config_name];
        assert_eq!(format!("{}.json", Digest::of(config).hex()), config_name);
        assert_eq!(image.id, Digest::of(config));
        assert_eq!(image.reference.tag, image.id.short());

        let layer_name = entry["Layers"][0].as_str().unwrap();
        let layer = &files[layer_name];
        let diff_id = Digest::of(layer);
        assert_eq!(layer_name, format!("{}/layer.tar", diff_id.hex()));
        let config: Value = serde_json::from_slice(config).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"], json!([diff_id.to_string()]));
        assert_eq!(tar_files(layer)["bin/x"], b"binary");
    }

    #[test]
    fn same_inputs_give_the_same_bytes_and_other_content_another_reference() {
        let (first, first_bytes) = archive_bytes(b"binary");
        let (second, second_bytes) = archive_bytes(b"binary");
        assert_eq!(first, second);
        assert_eq!(Digest::of(&first_bytes), Digest::of(&second_bytes));
        let (changed, _) = archive_bytes(b"binary v2");
        assert_ne!(changed.id, first.id);
        assert_ne!(changed.reference, first.reference);
        assert_eq!(changed.reference.repository, first.reference.repository);
    }

    #[test]
    fn the_archive_file_appears_only_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (image, bytes) = archive_bytes(b"binary");
        let path = dir.path().join("test.tar");
        let archive = write_archive_file(&image, &path).unwrap();
        assert_eq!(archive.reference, image.reference);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["test.tar"]);
    }
}
