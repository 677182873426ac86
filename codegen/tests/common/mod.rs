//! Helpers shared by the integration tests: the fixture and real spec, and text edits on spec files.
#![allow(dead_code)]

use std::path::PathBuf;

use mcall_codegen::SpecFiles;

/// `codegen/tests/fixtures/minimal`: a one-kind spec (`spec/`) and the files it generates (`expected/`).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minimal")
}

/// The workspace root (the parent of `codegen/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("codegen/ has a parent").to_path_buf()
}

pub fn fixture_spec() -> SpecFiles {
    SpecFiles::read_dir(&fixture_dir().join("spec")).expect("the fixture spec is readable")
}

pub fn real_spec() -> SpecFiles {
    SpecFiles::read_dir(&workspace_root().join("spec")).expect("spec/ is readable")
}

/// Replaces the only occurrence of `from` in `file` with `to`; panics when `from` does not occur
/// exactly once, so an edit never silently misses after the fixture changes.
pub fn replace_once(spec: &mut SpecFiles, file: &str, from: &str, to: &str) {
    let text = spec.files.get_mut(file).unwrap_or_else(|| panic!("no spec file {file}"));
    let count = text.matches(from).count();
    assert_eq!(count, 1, "{from:?} occurs {count} times in {file}, expected exactly once");
    *text = text.replacen(from, to, 1);
}
