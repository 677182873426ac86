//! One reproducible, uncompressed layer tar from a list of entries.
//!
//! Reproducible means the same entries give the same bytes (and so the same diff ID and image
//! ID) on every build: entries are sorted by path, every parent directory gets its own entry,
//! and nothing of the build host leaks in (mtime 0, owner 0:0, no user or group names), so a
//! rebuild of unchanged inputs is recognised by containerd as the image it already has.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tar::{Builder, EntryType, Header};

use super::digest::Digest;
use crate::{Error, Result, io_err};

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// Read from this host path when the layer is built; symlinks are followed, so the image
    /// gets the file's content under the path the recipe names.
    Host(PathBuf),
    /// These bytes.
    Bytes(Vec<u8>),
}

/// One entry of a layer, at an absolute path inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    File {
        path: String,
        mode: u32,
        source: FileSource,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl LayerEntry {
    pub fn file(path: impl Into<String>, mode: u32, source: FileSource) -> LayerEntry {
        LayerEntry::File {
            path: path.into(),
            mode,
            source,
        }
    }

    pub fn dir(path: impl Into<String>, mode: u32) -> LayerEntry {
        LayerEntry::Dir {
            path: path.into(),
            mode,
        }
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> LayerEntry {
        LayerEntry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// The absolute path inside the image.
    pub fn path(&self) -> &str {
        match self {
            LayerEntry::File { path, .. }
            | LayerEntry::Dir { path, .. }
            | LayerEntry::Symlink { path, .. } => path,
        }
    }
}

/// A built layer: the tar and its digest (the image config's `diff_id`, and, uncompressed, also
/// the digest the manifest names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub diff_id: Digest,
}

/// The mode of the parent directories no entry names.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Builds the layer: validates the paths, adds the parent directories the entries imply, and
/// writes everything sorted by path (a parent sorts before its children: it is their prefix).
pub fn build_layer(entries: &[LayerEntry]) -> Result<Layer> {
    let tree = plan(entries)?;
    let mut builder = Builder::new(Vec::new());
    for (path, entry) in &tree {
        append(&mut builder, path, entry)?;
    }
    let tar = builder
        .into_inner()
        .map_err(io_err("finishing the layer tar", "<memory>"))?;
    let diff_id = Digest::of(&tar);
    Ok(Layer { tar, diff_id })
}

/// The entries keyed by their archive path (relative, no leading `/`), with implied parents.
fn plan(entries: &[LayerEntry]) -> Result<BTreeMap<String, LayerEntry>> {
    let mut tree = BTreeMap::new();
    for entry in entries {
        let rel = archive_path(entry.path())?;
        if let LayerEntry::File { mode, .. } | LayerEntry::Dir { mode, .. } = entry
            && mode & !0o7777 != 0
        {
            return Err(invalid(
                entry.path(),
                format!("mode {mode:o} is not a file mode"),
            ));
        }
        if tree.insert(rel.clone(), entry.clone()).is_some() {
            return Err(invalid(entry.path(), "the path is listed twice"));
        }
    }
    let paths: Vec<String> = tree.keys().cloned().collect();
    for path in paths {
        for parent in ancestors(&path) {
            match tree.get(parent) {
                None => {
                    let dir = LayerEntry::dir(format!("/{parent}"), IMPLIED_DIR_MODE);
                    tree.insert(parent.to_string(), dir);
                }
                Some(LayerEntry::Dir { .. }) => {}
                Some(_) => {
                    return Err(invalid(
                        &format!("/{path}"),
                        format!("its parent /{parent} is not a directory"),
                    ));
                }
            }
        }
    }
    Ok(tree)
}

/// `/usr/local/bin/x` → `usr/local/bin/x`; refuses relative, non-normal and empty paths, which
/// would let an entry land outside the path the recipe meant.
fn archive_path(path: &str) -> Result<String> {
    let rel = path
        .strip_prefix('/')
        .ok_or_else(|| invalid(path, "the path is not absolute"))?;
    let normal = !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !normal {
        return Err(invalid(
            path,
            "the path must be absolute and normal (no empty, `.` or `..` parts)",
        ));
    }
    Ok(rel.to_string())
}

/// The proper ancestors of a relative path, nearest first: `a/b/c` → `a/b`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.char_indices()
        .rev()
        .filter(|&(_, c)| c == '/')
        .map(move |(i, _)| &path[..i])
}

fn append(builder: &mut Builder<Vec<u8>>, path: &str, entry: &LayerEntry) -> Result<()> {
    let mut header = Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let write = io_err("writing the layer entry", format!("/{path}"));
    match entry {
        LayerEntry::File { mode, source, .. } => {
            let bytes = match source {
                FileSource::Bytes(bytes) => bytes.clone(),
                FileSource::Host(host) => {
                    std::fs::read(host).map_err(io_err("reading an image file from", host))?
                }
            };
            header.set_entry_type(EntryType::Regular);
            header.set_mode(*mode);
            header.set_size(bytes.len() as u64);
            builder
                .append_data(&mut header, path, bytes.as_slice())
                .map_err(write)
        }
        LayerEntry::Dir { mode, .. } => {
            header.set_entry_type(EntryType::Directory);
            header.set_mode(*mode);
            header.set_size(0);
            builder
                .append_data(&mut header, path, std::io::empty())
                .map_err(write)
        }
        LayerEntry::Symlink { target, .. } => {
            header.set_entry_type(EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder
                .append_link(&mut header, path, target)
                .map_err(write)
        }
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> Error {
    Error::ImageLayer {
        path: path.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(layer: &Layer) -> Vec<(String, EntryType, u32, u64, u64, u64)> {
        let mut archive = tar::Archive::new(layer.tar.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn parents_are_implied_and_everything_is_sorted_and_owned_by_root() {
        let layer = build_layer(&[
            LayerEntry::symlink("/bin/sh", "busybox"),
            LayerEntry::file("/bin/busybox", 0o755, FileSource::Bytes(b"bb".to_vec())),
            LayerEntry::dir("/tmp", 0o1777),
            LayerEntry::file("/a-b/c", 0o644, FileSource::Bytes(vec![])),
        ])
        .unwrap();
        let names: Vec<_> = listing(&layer)
            .into_iter()
            .map(|(p, t, mode, uid, gid, mtime)| {
                assert_eq!((uid, gid, mtime), (0, 0, 0), "{p}");
                (p, t, mode)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("a-b".into(), EntryType::Directory, 0o755),
                ("a-b/c".into(), EntryType::Regular, 0o644),
                ("bin".into(), EntryType::Directory, 0o755),
                ("bin/busybox".into(), EntryType::Regular, 0o755),
                ("bin/sh".into(), EntryType::Symlink, 0o777),
                ("tmp".into(), EntryType::Directory, 0o1777),
            ]
        );
        assert_eq!(layer.diff_id, Digest::of(&layer.tar));
    }

    #[test]
    fn the_same_entries_in_any_order_give_the_same_bytes() {
        let a = LayerEntry::file("/etc/passwd", 0o644, FileSource::Bytes(b"x".to_vec()));
        let b = LayerEntry::symlink("/bin/sh", "busybox");
        let first = build_layer(&[a.clone(), b.clone()]).unwrap();
        let second = build_layer(&[b, a]).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn host_files_are_read_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), b"content").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let layer = build_layer(&[LayerEntry::file(
            "/lib/x.so",
            0o644,
            FileSource::Host(dir.path().join("link")),
        )])
        .unwrap();
        let mut archive = tar::Archive::new(layer.tar.as_slice());
        let mut entry = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.header().entry_type() == EntryType::Regular)
            .unwrap();
        let mut content = String::new();
        std::io::Read::read_to_string(&mut entry, &mut content).unwrap();
        assert_eq!(content, "content");
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused_naming_the_path() {
        let bytes = || FileSource::Bytes(vec![]);
        let cases = [
            (
                vec![LayerEntry::file("etc/passwd", 0o644, bytes())],
                "etc/passwd",
            ),
            (
                vec![LayerEntry::file("/etc/../x", 0o644, bytes())],
                "/etc/../x",
            ),
            (vec![LayerEntry::dir("/tmp/", 0o755)], "/tmp/"),
            (vec![LayerEntry::dir("/", 0o755)], "/"),
            (
                vec![LayerEntry::dir("/x", 0o755), LayerEntry::dir("/x", 0o700)],
                "/x",
            ),
            (
                vec![
                    LayerEntry::symlink("/lib", "usr/lib"),
                    LayerEntry::file("/lib/libc.so.6", 0o644, bytes()),
                ],
                "/lib/libc.so.6",
            ),
            (vec![LayerEntry::file("/x", 0o100644, bytes())], "/x"),
        ];
        for (entries, path) in cases {
            match build_layer(&entries) {
                Err(Error::ImageLayer { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{entries:?}: {other:?}"),
            }
        }
    }
}
