//! Emitters: IR → file contents. Each returns strings keyed by workspace-relative path; none
//! touches the disk.

use crate::GeneratedFiles;
use crate::ir::Ir;

pub mod crd;
pub mod rbac;
mod reasons;
mod render;
pub mod rust;
mod schema;
pub mod values;

/// Where the chart lives, relative to the workspace root.
pub const CHART_DIR: &str = "helm/mcall-operator";

/// Every generated file of the workspace.
pub fn all(ir: &Ir) -> GeneratedFiles {
    let mut files = GeneratedFiles::new();
    files.extend(rust::emit(ir));
    files.extend(crd::emit(ir));
    files.extend(rbac::emit(ir));
    files.extend(values::emit(ir));
    files
}

/// The header of Helm templates: a template comment, so it never renders into the manifests.
pub(crate) fn helm_template_header(source: &str) -> String {
    format!(
        "{{{{- /*\n{}\nSource: {source}\n*/}}}}\n",
        crate::GENERATED_NOTICE
    )
}

/// The `# @generated` header of YAML files.
pub(crate) fn yaml_header(source: &str) -> String {
    format!("# {}\n# Source: {source}\n", crate::GENERATED_NOTICE)
}
