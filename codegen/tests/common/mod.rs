//! Helpers shared by the integration tests: the fixture and the real spec, text edits on spec
//! files, and the checker of bad-spec cases.
#![allow(dead_code)]

use std::path::PathBuf;

use mcall_codegen::{SpecErrors, SpecFiles, generate, parse};

pub const KIND: &str = "kinds/widget.yaml";
pub const API: &str = "api.yaml";
pub const RBAC: &str = "rbac.yaml";
pub const ENVS: &str = "environments.yaml";
pub const REASONS: &str = "reasons.yaml";

/// `codegen/tests/fixtures/minimal`: a one-kind spec (`spec/`) and the files it generates (`expected/`).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minimal")
}

/// The workspace root (the parent of `codegen/`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("codegen/ has a parent")
        .to_path_buf()
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
    let text = spec
        .files
        .get_mut(file)
        .unwrap_or_else(|| panic!("no spec file {file}"));
    let count = text.matches(from).count();
    assert_eq!(
        count, 1,
        "{from:?} occurs {count} times in {file}, expected exactly once"
    );
    *text = text.replacen(from, to, 1);
}

/// One change to a file of the fixture spec.
pub enum Edit {
    /// In the file (first), replace the only occurrence of the second text with the third.
    Replace(&'static str, &'static str, &'static str),
    /// Add (or overwrite) a whole file.
    Write(&'static str, &'static str),
    /// Delete a file.
    Remove(&'static str),
}

impl Edit {
    pub fn file(&self) -> &'static str {
        match self {
            Edit::Replace(file, ..) | Edit::Write(file, _) | Edit::Remove(file) => file,
        }
    }
}

/// The fixture spec with `edits` applied.
pub fn apply(edits: &[&Edit]) -> SpecFiles {
    let mut spec = fixture_spec();
    for edit in edits {
        match edit {
            Edit::Replace(file, from, to) => replace_once(&mut spec, file, from, to),
            Edit::Write(file, text) => {
                spec.files.insert((*file).to_owned(), (*text).to_owned());
            }
            Edit::Remove(file) => {
                assert!(spec.files.remove(*file).is_some(), "no spec file {file}")
            }
        }
    }
    spec
}

/// A malformed spec: the fixture with one edit, and the error it must cause in the edited file.
pub struct Case {
    pub name: &'static str,
    pub edit: Edit,
    /// The path of the offending node inside the edited file, as the error displays it.
    pub path: &'static str,
    /// A substring of the error message.
    pub problem: &'static str,
}

pub fn listing(errors: &SpecErrors) -> String {
    errors.0.iter().map(|e| format!("\n    {e}")).collect()
}

/// The errors of a spec that must be refused (without printing the whole IR when it is not).
pub fn refused(spec: &SpecFiles) -> SpecErrors {
    match parse(spec) {
        Ok(_) => panic!("the spec is accepted"),
        Err(errors) => errors,
    }
}

/// What is wrong with how `cases` are refused: one line per case that is accepted, refused
/// without the expected `spec/<file>: <path>: ...<problem>...` error, or makes `generate`
/// disagree with `parse` (or panic).
pub fn failures(cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let spec = apply(&[&case.edit]);
        let generated = std::panic::catch_unwind(|| generate(&spec).err());
        let errors = match parse(&spec) {
            Ok(_) => {
                let panics = if generated.is_err() {
                    "; generate panics"
                } else {
                    ""
                };
                failures.push(format!("{}: accepted{panics}", case.name));
                continue;
            }
            Err(errors) => errors,
        };
        let prefix = format!("spec/{}: {}: ", case.edit.file(), case.path);
        let found = errors
            .0
            .iter()
            .map(ToString::to_string)
            .any(|e| e.starts_with(&prefix) && e.contains(case.problem));
        if !found {
            let got = listing(&errors);
            failures.push(format!(
                "{}: no error `{prefix}...{}...`; got:{got}",
                case.name, case.problem
            ));
        }
        // generate refuses with the same errors, so `cargo xtask generate` has nothing to write.
        if generated.ok() != Some(Some(errors)) {
            failures.push(format!(
                "{}: generate does not return the errors of parse",
                case.name
            ));
        }
    }
    failures
}

pub fn assert_refused(cases: &[Case]) {
    let failures = failures(cases);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}
