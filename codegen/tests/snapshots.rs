//! Snapshot tests of every emitter: the fixture spec (`fixtures/minimal/spec`) generates exactly
//! the files under `fixtures/minimal/expected/`, byte for byte. After an intended change of the
//! output, re-record them with
//!
//!     UPDATE_SNAPSHOTS=1 cargo test -p mcall-codegen --test snapshots
//!
//! and review the diff of `expected/` like any other code change. Also: generation is
//! deterministic, and the real `spec/` generates the checked-in files (`cargo xtask generate --check`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{fixture_dir, fixture_spec, real_spec, workspace_root};
use mcall_codegen::{GeneratedFiles, emit, generate, parse};

const UPDATE_HINT: &str =
    "run `UPDATE_SNAPSHOTS=1 cargo test -p mcall-codegen --test snapshots` and review the diff";

fn expected_dir() -> PathBuf {
    fixture_dir().join("expected")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1")
}

fn fixture_ir() -> mcall_codegen::ir::Ir {
    parse(&fixture_spec()).unwrap_or_else(|errors| panic!("{errors}"))
}

/// Every file below `dir`, relative to it.
fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.insert(path.strip_prefix(dir).expect("below dir").to_path_buf());
            }
        }
    }
    out
}

/// The differing region of two texts in the style of a unified diff: the lines between their
/// common beginning and common end (at most 12 of each side), with 3 lines of context.
fn diff(old_name: &str, new_name: &str, expected: &str, actual: &str) -> String {
    const MAX: usize = 12;
    let (old, new): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    let room = old.len().min(new.len()) - first;
    let common_end = old
        .iter()
        .rev()
        .zip(new.iter().rev())
        .take(room)
        .take_while(|(a, b)| a == b)
        .count();
    let (old_end, new_end) = (old.len() - common_end, new.len() - common_end);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n@@ line {} @@\n", first + 1);
    let mut push = |marker: char, lines: &[&str]| {
        for line in lines.iter().take(MAX) {
            out.push_str(&format!("{marker}{line}\n"));
        }
        if lines.len() > MAX {
            out.push_str(&format!("{marker}... ({} more lines)\n", lines.len() - MAX));
        }
    };
    push(' ', &old[first.saturating_sub(3)..first]);
    push('-', &old[first..old_end]);
    push('+', &new[first..new_end]);
    push(' ', &old[old_end..(old_end + 3).min(old.len())]);
    if first == old.len() && first == new.len() {
        out.push_str("(the texts differ only in line endings or the final newline)\n");
    }
    out
}

/// Compares `files` with their snapshots, or records them when `UPDATE_SNAPSHOTS=1`.
fn check_snapshots(files: &GeneratedFiles) {
    assert!(!files.is_empty(), "the emitter produced no files");
    let mut problems = Vec::new();
    for (path, actual) in files {
        let target = expected_dir().join(path);
        if updating() {
            std::fs::create_dir_all(target.parent().expect("a file has a parent"))
                .expect("create the snapshot directory");
            std::fs::write(&target, actual).expect("write the snapshot");
            continue;
        }
        match std::fs::read_to_string(&target) {
            Err(e) => problems.push(format!("expected/{}: no snapshot ({e})", path.display())),
            Ok(expected) if expected != *actual => {
                let name = path.display();
                problems.push(diff(
                    &format!("expected/{name}"),
                    &format!("generated {name}"),
                    &expected,
                    actual,
                ))
            }
            Ok(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} snapshot(s) differ; {UPDATE_HINT}:\n\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn rust_types() {
    let files = emit::rust::emit(&fixture_ir());
    let names: Vec<_> = files.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "generated/src/lib.rs",
            "generated/src/reasons.rs",
            "generated/src/types.rs",
            "generated/src/widget.rs"
        ]
    );
    check_snapshots(&files);
}

#[test]
fn crds() {
    let files = emit::crd::emit(&fixture_ir());
    let names: Vec<_> = files.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        ["helm/mcall-operator/crds/widgets.example.mcall.tz.io.yaml"]
    );
    check_snapshots(&files);
}

#[test]
fn rbac_template() {
    let files = emit::rbac::emit(&fixture_ir());
    let names: Vec<_> = files.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["helm/mcall-operator/templates/rbac.yaml"]);
    check_snapshots(&files);
}

#[test]
fn helm_values() {
    let files = emit::values::emit(&fixture_ir());
    let names: Vec<_> = files.keys().map(|p| p.display().to_string()).collect();
    let chart = "helm/mcall-operator";
    let expected = [
        "values-dev.yaml",
        "values-prod.yaml",
        "values.schema.json",
        "values.yaml",
    ]
    .map(|f| format!("{chart}/{f}"));
    assert_eq!(names, expected);
    check_snapshots(&files);
}

/// `generate` is exactly the union of the emitters, and `expected/` holds exactly its files
/// (with `UPDATE_SNAPSHOTS=1`, stale snapshots are removed).
#[test]
fn the_snapshot_set_matches_exactly() {
    let ir = fixture_ir();
    let files = generate(&fixture_spec()).expect("the fixture is valid");
    let mut union = emit::rust::emit(&ir);
    union.extend(emit::crd::emit(&ir));
    union.extend(emit::rbac::emit(&ir));
    union.extend(emit::values::emit(&ir));
    assert_eq!(files, union, "generate is not the union of the emitters");
    assert_eq!(files, emit::all(&ir));

    let generated: BTreeSet<PathBuf> = files.keys().cloned().collect();
    let recorded = files_below(&expected_dir());
    if updating() {
        for stale in recorded.difference(&generated) {
            std::fs::remove_file(expected_dir().join(stale)).expect("remove a stale snapshot");
        }
        return;
    }
    let missing: Vec<_> = generated.difference(&recorded).collect();
    let stale: Vec<_> = recorded.difference(&generated).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "snapshots missing: {missing:?}; stale: {stale:?}; {UPDATE_HINT}"
    );
}

#[test]
fn generation_is_deterministic() {
    let spec = fixture_spec();
    assert_eq!(parse(&spec), parse(&spec));
    let (first, second) = (
        generate(&spec).expect("valid"),
        generate(&spec).expect("valid"),
    );
    assert_eq!(first, second);
    // Reading the directory again (in whatever order the file system lists it) changes nothing.
    assert_eq!(generate(&fixture_spec()).expect("valid"), first);
    let real = real_spec();
    assert_eq!(
        generate(&real).expect("spec/ is valid"),
        generate(&real).expect("spec/ is valid")
    );
}

#[test]
fn every_generated_file_starts_with_the_notice() {
    for (path, text) in generate(&fixture_spec()).expect("valid") {
        let first = text.lines().next().unwrap_or_default();
        let ok = first.contains(mcall_codegen::GENERATED_NOTICE)
            || text.contains(mcall_codegen::GENERATED_NOTICE);
        assert!(
            ok,
            "{} does not carry the @generated notice",
            path.display()
        );
        assert!(
            text.ends_with('\n') && !text.ends_with("\n\n"),
            "{} does not end in one newline",
            path.display()
        );
    }
}

/// What `cargo xtask generate --check` checks: the checked-in files are what `spec/` generates.
#[test]
fn the_real_spec_generates_the_checked_in_files() {
    let root = workspace_root();
    let files =
        generate(&real_spec()).unwrap_or_else(|errors| panic!("spec/ is invalid: {errors}"));
    let mut problems = Vec::new();
    for (path, actual) in &files {
        match std::fs::read_to_string(root.join(path)) {
            Err(e) => problems.push(format!("{}: {e}", path.display())),
            Ok(expected) if expected != *actual => {
                let name = path.display();
                problems.push(diff(
                    &format!("checked-in {name}"),
                    &format!("generated {name}"),
                    &expected,
                    actual,
                ))
            }
            Ok(_) => {}
        }
    }
    // No generated file is left over from a kind that was removed or renamed.
    for dir in ["generated/src", "helm/mcall-operator/crds"] {
        for file in files_below(&root.join(dir)) {
            let path = Path::new(dir).join(&file);
            if !files.contains_key(&path) {
                problems.push(format!(
                    "{}: not generated from spec/ (stale?)",
                    path.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the checked-in files are not what spec/ generates; run `cargo xtask generate`:\n\n{}",
        problems.join("\n")
    );
}

/// The generated Rust files of the fixture, as (path, text).
fn generated_rust() -> Vec<(PathBuf, String)> {
    let files = generate(&fixture_spec()).expect("valid");
    files
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|e| e == "rs"))
        .collect()
}

#[test]
fn generated_rust_has_no_blank_line_after_an_opening_bracket() {
    for (path, text) in generated_rust() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, pair) in lines.windows(2).enumerate() {
            let opens = pair[0].ends_with('(') || pair[0].ends_with('{') || pair[0].ends_with('[');
            assert!(
                !(opens && pair[1].is_empty()),
                "{}:{}: blank line after {:?}",
                path.display(),
                i + 2,
                pair[0]
            );
        }
    }
}

/// `cargo xtask ci` runs `cargo fmt --all -- --check`, which formats `generated/` too.
#[test]
fn generated_rust_is_rustfmt_clean() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    for (path, text) in generated_rust() {
        let child = Command::new("rustfmt")
            .args(["--edition", "2024", "--emit", "stdout"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("rustfmt is not installed; skipping");
            return;
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to rustfmt");
        let output = child.wait_with_output().expect("rustfmt runs");
        assert!(
            output.status.success(),
            "rustfmt failed on {}",
            path.display()
        );
        let formatted = String::from_utf8(output.stdout).expect("UTF-8");
        if formatted != text {
            panic!(
                "{} is not rustfmt-clean:\n{}",
                path.display(),
                diff(
                    &format!("generated {}", path.display()),
                    "rustfmt",
                    &text,
                    &formatted
                )
            );
        }
    }
}
