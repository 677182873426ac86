//! Editing the spec reaches every generated file it should, and only those: a copy of the real
//! `spec/` gets a new McallTask field and a new Helm setting (in memory), and the test follows them
//! into the Rust type, the CRD, the values files and the values schema.

mod common;

use std::path::Path;

use common::{real_spec, replace_once};
use mcall_codegen::{GeneratedFiles, SpecFiles, generate};
use serde_json::{Value, json};

const PROBE_DOC: &str = "Label attached to every result of the task, for grouping in dashboards.";
const ANNOTATIONS_DOC: &str = "Annotations added to the operator pod.";

const TASK_RS: &str = "generated/src/mcall_task.rs";
const TASK_CRD: &str = "helm/mcall-operator/crds/mcalltasks.mcall.tz.io.yaml";
const VALUES: &str = "helm/mcall-operator/values.yaml";
const VALUES_DEV: &str = "helm/mcall-operator/values-dev.yaml";
const SCHEMA: &str = "helm/mcall-operator/values.schema.json";

/// The real spec with `probeLabel` added to McallTask's spec and `podAnnotations` to the settings
/// (with a value in dev).
fn edited_spec() -> SpecFiles {
    let mut spec = real_spec();
    replace_once(
        &mut spec,
        "kinds/mcalltask.yaml",
        "      fields:\n        type:\n          ref: TaskType\n",
        &format!(
            "      fields:\n        probeLabel:\n          type: string\n          maxLength: 63\n          \
             description: {PROBE_DOC}\n        type:\n          ref: TaskType\n"
        ),
    );
    replace_once(
        &mut spec,
        "environments.yaml",
        "\nenvironments:\n",
        &format!(
            "\n  podAnnotations:\n    type: map\n    description: {ANNOTATIONS_DOC}\n    values:\n      \
             type: string\n\nenvironments:\n"
        ),
    );
    replace_once(
        &mut spec,
        "environments.yaml",
        "  dev:\n    namespace: mcall-dev\n    releaseName: mcall-operator-dev\n    values:\n",
        "  dev:\n    namespace: mcall-dev\n    releaseName: mcall-operator-dev\n    values:\n      \
         podAnnotations: {prometheus.io/scrape: \"true\"}\n",
    );
    spec
}

fn generate_ok(spec: &SpecFiles) -> GeneratedFiles {
    generate(spec).unwrap_or_else(|errors| panic!("{errors}"))
}

fn file<'a>(files: &'a GeneratedFiles, path: &str) -> &'a str {
    files
        .get(Path::new(path))
        .unwrap_or_else(|| panic!("{path} is not generated"))
}

#[test]
fn the_new_field_is_an_optional_documented_rust_field() {
    let files = generate_ok(&edited_spec());
    let rust = file(&files, TASK_RS);
    let lines: Vec<&str> = rust.lines().map(str::trim).collect();
    let field = lines
        .iter()
        .position(|l| *l == "pub probe_label: Option<String>,")
        .expect("the field is emitted");
    // The doc comment comes first, then the field's attributes, then the field.
    let doc = lines[..field]
        .iter()
        .rposition(|l| l.starts_with("///"))
        .expect("a doc comment");
    assert_eq!(lines[doc], format!("/// {PROBE_DOC}"));
    assert!(
        lines[doc + 1..field].iter().all(|l| l.starts_with("#[")),
        "{:?}",
        &lines[doc..=field]
    );
    let attributes = lines[doc + 1..field].join(" ");
    assert!(
        attributes.contains("skip_serializing_if = \"Option::is_none\""),
        "{attributes}"
    );
    assert!(attributes.contains("length(max = 63)"), "{attributes}");
    // It is a field of the spec struct, before the struct's first own field `type`.
    let spec_struct = lines
        .iter()
        .position(|l| *l == "pub struct McallTaskSpec {")
        .expect("the spec struct");
    let type_field = lines
        .iter()
        .position(|l| *l == "pub r#type: TaskType,")
        .expect("the type field");
    assert!(spec_struct < field && field < type_field);
}

#[test]
fn the_new_field_is_in_the_crd_with_its_description() {
    let files = generate_ok(&edited_spec());
    let text = file(&files, TASK_CRD);
    assert!(text.contains("probeLabel:"));
    assert!(text.contains(PROBE_DOC));
    let crd: Value = serde_saphyr::from_str(text).expect("the CRD is YAML");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let probe = &spec["properties"]["probeLabel"];
    assert_eq!(
        probe,
        &json!({"type": "string", "maxLength": 63, "description": PROBE_DOC, "nullable": true}),
        "{probe:#}"
    );
    let required = spec["required"]
        .as_array()
        .expect("spec has required fields");
    assert!(!required.contains(&json!("probeLabel")));
}

#[test]
fn the_new_setting_is_in_the_values_files_and_the_schema() {
    let files = generate_ok(&edited_spec());
    let values = file(&files, VALUES);
    assert!(
        values.contains(&format!("# {ANNOTATIONS_DOC}\npodAnnotations: {{}}\n")),
        "{values}"
    );
    let dev = file(&files, VALUES_DEV);
    assert!(
        dev.contains(&format!(
            "# {ANNOTATIONS_DOC}\npodAnnotations: {{\"prometheus.io/scrape\":\"true\"}}\n"
        )),
        "{dev}"
    );
    let dev_values: Value = serde_saphyr::from_str(dev).expect("values-dev.yaml is YAML");
    assert_eq!(
        dev_values["podAnnotations"],
        json!({"prometheus.io/scrape": "true"})
    );
    for other in ["values-staging.yaml", "values-prod.yaml"] {
        assert!(
            !file(&files, &format!("helm/mcall-operator/{other}")).contains("podAnnotations"),
            "{other}"
        );
    }
    let schema: Value =
        serde_json::from_str(file(&files, SCHEMA)).expect("values.schema.json is JSON");
    assert_eq!(
        schema["properties"]["podAnnotations"],
        json!({"type": "object", "description": ANNOTATIONS_DOC, "additionalProperties": {"type": "string"}})
    );
}

#[test]
fn only_the_files_the_edit_touches_change() {
    let before = generate_ok(&real_spec());
    let after = generate_ok(&edited_spec());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file appears or disappears"
    );
    let changed: Vec<String> = before
        .iter()
        .filter(|(path, text)| after[*path] != **text)
        .map(|(path, _)| path.display().to_string())
        .collect();
    // lib.rs records the fingerprint; types.rs, the workflow and the RBAC template stay as they were.
    let expected = [
        "generated/src/lib.rs",
        TASK_RS,
        TASK_CRD,
        VALUES_DEV,
        SCHEMA,
        VALUES,
    ];
    assert_eq!(changed, expected);
}

#[test]
fn the_fingerprint_changes_and_is_recorded() {
    let (original, edited) = (real_spec(), edited_spec());
    assert_ne!(original.fingerprint(), edited.fingerprint());
    let lib = file(&generate_ok(&edited), "generated/src/lib.rs").to_owned();
    assert!(
        lib.contains(&format!("fingerprint = \"{}\"", edited.fingerprint())),
        "{lib}"
    );
    assert!(
        lib.contains(&format!(
            "pub const SPEC_FINGERPRINT: &str = \"{}\";",
            edited.fingerprint()
        )),
        "{lib}"
    );
    assert!(!lib.contains(&original.fingerprint()));
}
